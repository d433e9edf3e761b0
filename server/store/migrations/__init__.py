"""Alembic's script directory: env.py and one module per schema revision under versions/.

Shipped inside the package, so an installed server migrates without the repository. Run
through server/store/migrate.py (`python -m server migrate`), never by hand."""
