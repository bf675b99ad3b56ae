"""The preference-collection web app (paper component 1): annotators compare two responses.

``chatglm-rlhf annotate serve`` runs a FastAPI app over SQLAlchemy (SQLite by default, PostgreSQL by
URL). See :mod:`.cli` for the commands, :mod:`.service` for the rules and :mod:`.web` for the pages.
"""
