"""The store: the only code that reads or writes the database (SQLAlchemy, SQLite or PostgreSQL).

One module per kind of row; callers import the module they need (``from service.store
import samples as sample_store``). Nothing is re-exported here. The modules form layers,
each importing only those below it (an import-linter ``layers`` contract in
``pyproject.toml`` keeps it so)::

    decisions, targets, forecasts,     one module per kind of row; none of them imports
    model_registry, rollups, leases    another (forecasts uses samples, one layer down)
    samples                            ingest, entities, series queries, active series
    sql, errors                        dialect upserts, IN-list chunks; NotFoundError, QueryError
    db, tables                         engines, transactions, Store; the schema (migrations/ only)

docs/architecture.md draws the same layers.
"""
