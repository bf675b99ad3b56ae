"""``chatglm-rlhf annotate ...``: serve the app, set up the database, load candidates, manage users,
export annotations and print agreement statistics.

Heavy imports (FastAPI, SQLAlchemy, uvicorn) happen inside the command functions so that
``chatglm-rlhf --help`` stays fast.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from chatglm_rlhf.collect.annotate.batch_cli import add_batch_parser, round_arg
from chatglm_rlhf.errors import UserError

DEFAULT_DB = os.environ.get("CHATGLM_RLHF_ANNOTATE_DB", "annotate.db")
FORMATS = ("ours", "trl", "trl-conversational")
PAIR_MODES = ("all", "adjacent", "first")
FMT = argparse.ArgumentDefaultsHelpFormatter


def _open(args: argparse.Namespace, migrate: bool):
    """The database named by --db; ``migrate`` upgrades its schema first (creating it if new)."""
    from chatglm_rlhf.collect.annotate import db as dbmod

    database = dbmod.Database(args.db)
    if migrate:
        dbmod.migrate(database)
    else:
        dbmod.require_current_schema(database)
    return database


# --- commands -------------------------------------------------------------------------------------


def cmd_init_db(args: argparse.Namespace) -> int:
    import sys

    from chatglm_rlhf.collect.annotate import db as dbmod

    if getattr(args, "deprecated_name", None):
        print(
            "note: `annotate init-db` is deprecated, an old name of `annotate migrate`; it still works",
            file=sys.stderr,
        )
    database = dbmod.Database(args.db)
    before, after = dbmod.migrate(database)
    state = "already at" if before == after else f"migrated from {before or 'empty'} to"
    print(f"{dbmod.redact(database.url)}: {state} schema {after}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import socket

    import uvicorn
    from sqlalchemy import func, select

    from chatglm_rlhf.collect.annotate.app import Settings, create_app
    from chatglm_rlhf.collect.annotate.db import redact
    from chatglm_rlhf.collect.annotate.models import User

    database = _open(args, migrate=not args.no_migrate)
    settings = Settings(
        secure_cookies=args.secure_cookies, session_hours=args.session_hours, max_chars=args.max_chars
    )
    app = create_app(database, settings)
    # Bind first so that --port 0 works and the printed URL is the real one.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says
    # TCP, and accepted sockets copy it. With Nagle on, a response written in two parts (headers, then
    # body) waited for the client's delayed ACK: 40 ms on every request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from e
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    with database.read() as s:
        admins = s.scalar(select(func.count()).select_from(User).where(User.role == "admin"))
    print(f"annotate: database {redact(database.url)}", flush=True)
    if not admins:
        print("annotate: no admin yet: chatglm-rlhf annotate user add NAME --role admin --db ...", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.secure_cookies:
        print(
            "annotate: warning: listening beyond this machine; put it behind HTTPS and pass --secure-cookies"
        )
    print(f"annotate: open http://{host}:{port}/ in a browser", flush=True)
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=args.keep_alive,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import service

    if not os.path.isfile(args.file):
        raise UserError(f"{args.file}: no such file")
    database = _open(args, migrate=True)
    lines, report = service.load_file(
        database, args.file, args.project, args.overlap, args.pairs, args.max_chars, round_=args.round
    )
    for line in lines:
        print(line, file=sys.stderr)
    if args.guidelines:
        _set_guidelines(database, args.project, args.guidelines)
    print(f"project {args.project}: " + "\n".join(report.lines()))
    return 0


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UserError(f"{path}: {e.strerror}") from e


def _set_guidelines(database, project: str, path: str) -> None:
    from chatglm_rlhf.collect.annotate import service

    text = _read_text(path)
    with database.write() as s:
        service.set_guidelines(s, service.get_project(s, project), text)
    print(f"project {project}: guidelines set from {path}")


def cmd_project_set(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import service

    database = _open(args, migrate=True)
    if args.overlap is None and args.guidelines is None:
        raise UserError("nothing to change: give --overlap and/or --guidelines")
    if args.overlap is not None:
        with database.write() as s:
            service.set_overlap(s, service.get_project(s, args.name), args.overlap)
        print(f"project {args.name}: overlap {args.overlap}")
    if args.guidelines is not None:
        _set_guidelines(database, args.name, args.guidelines)
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import service
    from chatglm_rlhf.collect.annotate.stats import project_stats, round_line

    database = _open(args, migrate=False)
    with database.read() as s:
        for p in service.list_projects(s):
            st = project_stats(s, p)
            rounds = f"; {round_line(st.rounds)}" if len(st.rounds) > 1 else ""
            print(
                f"{p.name}: {st.items} pairs, overlap {p.overlap}, {st.done}/{st.target} judgements{rounds}"
            )
    return 0


def _password(args: argparse.Namespace) -> str:
    from chatglm_rlhf.collect.annotate import security

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if args.generate_password:
        password = security.generate_password()
        print(f"password: {password}")
        return password
    if not sys.stdin.isatty():
        raise UserError("no password: use --password-stdin or --generate-password (stdin is not a terminal)")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise UserError("the passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import service

    database = _open(args, migrate=True)
    password = _password(args)
    with database.write() as s:
        user = service.create_user(s, args.username, password, args.role)
        token = service.issue_token(s, user) if args.token else None
    print(f"user {args.username} ({args.role}) created")
    if token:
        print(f"API token (shown once): {token}")
    return 0


def cmd_user_token(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import service

    database = _open(args, migrate=False)
    with database.write() as s:
        token = service.issue_token(s, service.get_user(s, args.username))
    print(f"API token for {args.username} (shown once; the previous one no longer works): {token}")
    return 0


def cmd_user_active(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import service

    database = _open(args, migrate=False)
    with database.write() as s:
        released = service.set_active(s, service.get_user(s, args.username), args.active)
    state = "activated" if args.active else f"deactivated; {released} open items released to others"
    print(f"user {args.username} {state}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from chatglm_rlhf.collect.annotate.models import User

    database = _open(args, migrate=False)
    with database.read() as s:
        for u in s.scalars(select(User).order_by(User.username)):
            print(f"{u.username}\t{u.role}\t{'active' if u.active else 'inactive'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import export, service

    database = _open(args, migrate=False)
    with database.read() as s:  # written while the rows stream in: one snapshot, one batch in memory
        project = service.get_project(s, args.project)
        records = export.iter_comparisons(s, project, args.include_skipped, args.round)
        written, left_out = export.write(args.output, records, args.format)
    note = f" ({left_out} left out: ties and skips have no chosen/rejected)" if args.format != "ours" else ""
    print(f"wrote {written} records to {args.output} in format {args.format}{note}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from chatglm_rlhf.collect.annotate import service
    from chatglm_rlhf.collect.annotate.stats import format_stats, project_stats

    database = _open(args, migrate=False)
    with database.read() as s:
        st = project_stats(s, service.get_project(s, args.project))
    print(json.dumps(st.to_dict(), indent=2) if args.json else format_stats(st))
    return 0


# --- parser ---------------------------------------------------------------------------------------


def _db_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--db",
        default=DEFAULT_DB,
        help="SQLite file path, or a URL such as postgresql+psycopg://user:pw@host/db "
        "(default from $CHATGLM_RLHF_ANNOTATE_DB when set)",
    )
    return parent


def _add_serve(sub, db: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[db], formatter_class=FMT, help="run the annotation web app")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument(
        "--secure-cookies", action="store_true", help="mark cookies Secure (when served over HTTPS)"
    )
    p.add_argument("--session-hours", type=float, default=12.0, help="login session lifetime")
    p.add_argument("--max-chars", type=int, default=50_000, help="longest text accepted by uploads on /admin")
    p.add_argument("--no-migrate", action="store_true", help="do not upgrade the schema at start-up")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="server log level",
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument(
        "--keep-alive",
        type=float,
        default=75.0,
        help="seconds an idle keep-alive connection stays open (uvicorn's 5 s races clients that reuse it)",
    )
    p.set_defaults(func=cmd_serve)


def _add_user(sub, db: argparse.ArgumentParser) -> None:
    user = sub.add_parser("user", formatter_class=FMT, help="manage accounts")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = usub.add_parser("add", parents=[db], formatter_class=FMT, help="create an account")
    p.add_argument("username", help="login name: letters, digits, '_', '.', '-'")
    p.add_argument(
        "--role", choices=["annotator", "admin"], default="annotator", help="admins manage projects"
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first stdin line"
    )
    how.add_argument("--generate-password", action="store_true", help="generate a password and print it")
    p.add_argument("--token", action="store_true", help="also create an API token and print it")
    p.set_defaults(func=cmd_user_add)
    p = usub.add_parser("token", parents=[db], formatter_class=FMT, help="issue a new API token")
    p.add_argument("username", help="account to issue the token for")
    p.set_defaults(func=cmd_user_token)
    p = usub.add_parser("list", parents=[db], formatter_class=FMT, help="list accounts")
    p.set_defaults(func=cmd_user_list)
    for name, active, text in (
        ("deactivate", False, "block an account (its open items go to others)"),
        ("activate", True, "unblock an account"),
    ):
        p = usub.add_parser(name, parents=[db], formatter_class=FMT, help=text)
        p.add_argument("username", help="account name")
        p.set_defaults(func=cmd_user_active, active=active)


def _add_project(sub, db: argparse.ArgumentParser) -> None:
    project = sub.add_parser("project", formatter_class=FMT, help="list projects or change their settings")
    psub = project.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    p = psub.add_parser("set", parents=[db], formatter_class=FMT, help="change overlap or guidelines")
    p.add_argument("name", help="project name")
    p.add_argument("--overlap", type=int, default=None, help="annotators per pair")
    p.add_argument("--guidelines", default=None, help="Markdown file with the new guidelines")
    p.set_defaults(func=cmd_project_set)
    p = psub.add_parser("list", parents=[db], formatter_class=FMT, help="list projects with progress")
    p.set_defaults(func=cmd_project_list)


def add_commands(parser: argparse.ArgumentParser) -> None:
    db = _db_parent()
    sub = parser.add_subparsers(dest="annotate_command", metavar="ACTION", required=True)
    _add_serve(sub, db)
    p = sub.add_parser(
        "migrate", parents=[db], formatter_class=FMT, help="create or upgrade the database schema"
    )
    p.set_defaults(func=cmd_init_db)
    # The old name of the same command: still works, with a notice (one name per meaning).
    p = sub.add_parser(
        "init-db", parents=[db], formatter_class=FMT, help="deprecated: an old name of migrate"
    )
    p.set_defaults(func=cmd_init_db, deprecated_name="init-db")
    p = sub.add_parser(
        "load", parents=[db], formatter_class=FMT, help="load a candidates JSONL into a project"
    )
    p.add_argument("file", help="our JSONL: id, prompt, history, responses (k >= 2)")
    p.add_argument("--project", required=True, help="project name (created if new)")
    p.add_argument("--overlap", type=int, default=3, help="annotators per pair (for a new project)")
    p.add_argument(
        "--pairs", choices=PAIR_MODES, default="all", help="pairs to form among k responses (new project)"
    )
    p.add_argument("--max-chars", type=int, default=50_000, help="reject samples with a longer text")
    p.add_argument("--guidelines", default=None, help="Markdown file to use as the project's guidelines")
    p.add_argument(
        "--round",
        type=round_arg,
        default=None,
        help="feedback round of every sample (default: each one's meta.round, else 1)",
    )
    p.set_defaults(func=cmd_load)
    _add_user(sub, db)
    _add_project(sub, db)
    p = sub.add_parser("export", parents=[db], formatter_class=FMT, help="export raw annotations")
    p.add_argument("--project", required=True, help="project name")
    p.add_argument(
        "--format", choices=FORMATS, default="ours", help="ours: Comparison JSONL; trl*: TRL files"
    )
    p.add_argument("-o", "--output", required=True, help="output JSONL path")
    p.add_argument(
        "--include-skipped", action="store_true", help="also export skips (label 'tie', meta.skipped = true)"
    )
    p.add_argument("--round", type=round_arg, default=None, help="only this feedback round's comparisons")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser(
        "stats", parents=[db], formatter_class=FMT, help="progress and inter-annotator agreement"
    )
    p.add_argument("--project", required=True, help="project name")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_stats)
    add_batch_parser(sub, FMT)


def register(subparsers) -> None:
    """Add ``annotate`` to the main CLI."""
    parser = subparsers.add_parser(
        "annotate",
        formatter_class=FMT,
        help="collect human preferences (web app)",
        description="Preference collection: annotators compare two responses under written guidelines.",
    )
    add_commands(parser)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m chatglm_rlhf.collect.annotate`` (same commands as ``annotate``)."""
    parser = argparse.ArgumentParser(prog="python -m chatglm_rlhf.collect.annotate", formatter_class=FMT)
    add_commands(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
