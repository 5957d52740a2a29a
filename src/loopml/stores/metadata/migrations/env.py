"""Alembic environment: always driven programmatically with a connection passed in."""

from alembic import context

from loopml.stores.metadata.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
