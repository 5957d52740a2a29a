"""Services: one module or package per part; each gets its stores passed in."""
