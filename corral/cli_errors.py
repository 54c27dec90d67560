"""How the `corral` command fails: an expected failure (etcd or Redis not answering, a
request the cluster refuses) is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
import typer

from corral.base.config import Settings


def say(message: str) -> NoReturn:
    """The one line, and exit status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise SystemExit(2)


def run(app: typer.Typer) -> None:
    """Run the command, turning expected failures into `say()`."""
    import redis
    from etcd3 import exceptions as etcd_errors
    from kombu import exceptions as kombu_errors

    from corral.base.etcd import EtcdUnavailable
    from corral.client import Backpressure, SessionConflict

    try:
        status = app(standalone_mode=False)  # an Exit's code comes back as the result
        if isinstance(status, int) and not isinstance(status, bool):
            sys.exit(status)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except (EtcdUnavailable, SessionConflict, Backpressure) as exc:
        say(str(exc))
    except etcd_errors.Etcd3Exception as exc:
        say(f"etcd at {Settings.from_env().etcd} failed: {type(exc).__name__}: {str(exc).strip()[:200]}")
    except (redis.RedisError, kombu_errors.OperationalError, OSError) as exc:
        say(f"broker {redacted(Settings.from_env().broker)} failed: {type(exc).__name__}: {exc}")


def redacted(url: str) -> str:
    """A URL fit to print: without its password."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, userinfo = head.partition("://")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{tail}" if ":" in userinfo else url
