"""Alembic environment of the results database: run by :meth:`ctfleet.results.db.SqlStore.migrate`
on the connection it passes in ``config.attributes["connection"]`` (no alembic.ini needed)."""

from alembic import context

from ctfleet.results.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only SqlStore.migrate runs these migrations
    raise SystemExit("run the results migrations with `ctfleet results migrate --db URL`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
