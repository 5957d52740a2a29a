"""Stores: the metadata database and the content-addressed artifact store."""
