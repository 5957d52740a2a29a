"""Route modules of the loopml server, one per part."""
