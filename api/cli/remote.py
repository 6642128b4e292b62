"""`--server URL`: `select`, `predict` and `plan` ask a running pickwise service instead of loading
the predictor in this process (seconds per call). They send the same request bodies and read the
answers into the same response models, so the output is the local path's.

Every failure names the URL and exits 2: a server that cannot be reached, that times out, or that
refuses the request (its `detail` is quoted); an infeasible `select` exits 1, as it does locally.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from pickwise.api.cli.options import CliError, option_for

SERVER_ENV = "PICKWISE_SERVER"
TIMEOUT_S = 600.0  # a plan or a predict chunk the server is still computing
CONNECT_TIMEOUT_S = 10.0
CANCEL_TIMEOUT_S = 10.0  # the DELETE sent for an interrupted job: Ctrl-C should not hang
JOB_WAIT_S = 3600.0  # how long `plan` polls a job (the server keeps one an hour by default)
LOAD_WAIT_S = 300.0  # how long a call waits for a server still loading its predictor (503, loading: true)
LOAD_POLL_S = 1.0


def add_server_option(parser: argparse.ArgumentParser, instead: str = "loading the predictor here") -> None:
    parser.add_argument("--server", metavar="URL", default=None,
                        help=f"ask the pickwise service at URL (e.g. http://127.0.0.1:8000) instead of {instead} "
                             f"(default: ${SERVER_ENV}; --server '' runs locally)")


# options that name something on this machine the server's answer would not use
LOCAL_ONLY = {"registry": "a registry", "artifact": "a predictor artifact"}


def server_url(args: argparse.Namespace) -> str | None:
    """The server the command should ask, or None to run locally. An option naming a registry or an
    artifact here, with a server named too (by --server or the environment), is refused: the server
    would answer from its own, and a write would go where the user did not mean."""
    url = args.server if args.server is not None else os.environ.get(SERVER_ENV, "")
    url = url.strip().rstrip("/") or None
    for option, what in LOCAL_ONLY.items():
        given = getattr(args, option, None)
        if url and given:
            raise CliError(f"--{option} {given} names {what} here and --server (default ${SERVER_ENV}) the "
                           f"pickwise server at {url}, which uses its own: give --server '' to use --{option}")
    return url


class Server:
    """A pickwise service at `url`, over HTTP/JSON."""

    def __init__(self, url: str, args: argparse.Namespace | None = None, token: str | None = None):
        """`args`: the command's options, so a request field the server refuses is named as the option.
        `token`: sent as `Authorization: Bearer` (the registry's writes need the server's admin token)."""
        import httpx

        if not url.startswith(("http://", "https://")):
            raise CliError(f"--server {url!r}: expected an http:// or https:// URL")
        self.url = url
        self.args = args
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                                    headers={"Authorization": f"Bearer {token}"} if token else None)

    def call(self, method: str, path: str, body: str | None = None, timeout: float = TIMEOUT_S,
             content_type: str = "application/json") -> tuple[int, Any]:
        """(status, parsed JSON body); a CliError naming the URL when there is no JSON answer. A server
        still loading its predictor (just started) is waited for, as the local path waits for its own load."""
        deadline = time.monotonic() + LOAD_WAIT_S
        told = False
        while True:
            status, answer = self._call_once(method, path, body, timeout, content_type)
            loading = status == 503 and isinstance(answer, dict) and answer.get("loading") is True
            if not loading or time.monotonic() > deadline:
                return status, answer
            if not told:
                print(f"the pickwise server at {self.url}: {answer.get('detail')}; waiting (at most "
                      f"{LOAD_WAIT_S:g} s)", file=sys.stderr)
                told = True
            _wait(LOAD_POLL_S)

    def _call_once(self, method: str, path: str, body: str | None, timeout: float,
                   content_type: str) -> tuple[int, Any]:
        import httpx

        try:
            response = self._client.request(method, path, content=body, timeout=httpx.Timeout(
                timeout, connect=CONNECT_TIMEOUT_S), headers={"Content-Type": content_type} if body else None)
        except httpx.TimeoutException:
            raise CliError(f"the pickwise server at {self.url} did not answer {method} {path} within "
                           f"{timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the pickwise server at {self.url}: {exc}") from None
        try:
            return response.status_code, response.json()
        except ValueError:
            raise CliError(f"the pickwise server at {self.url} answered {method} {path} with HTTP "
                           f"{response.status_code} and no JSON body; is it a pickwise service?") from None

    def refusal(self, status: int, body: Any) -> CliError:
        """The CliError (exit 2) for an error answer: the URL, the status and the server's detail."""
        detail = body.get("detail") if isinstance(body, dict) else None
        fields = _field_errors(body)
        if fields:  # as the local path says it (pickwise.api.cli.main): the option, then what is wrong
            detail = "; ".join(f"{option_for(self.args, field)}: {message}" for field, message in fields)
        return CliError(f"the pickwise server at {self.url} answered HTTP {status}: {detail or body}")

    def answer(self, method: str, path: str, body: str | None = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, answer = self.call(method, path, body)
        if status not in ok:
            raise self.refusal(status, answer)
        return answer

    def wait_for_job(self, job: dict) -> tuple[int, Any]:
        """Poll a plan job until it ends: (200, the plan) or (status, error body) like an inline plan's
        for a refusal that has one (infeasible, invalid); a CliError saying how it ended otherwise."""
        deadline = time.monotonic() + JOB_WAIT_S
        delay = 0.1
        try:
            while job.get("status") in ("queued", "running"):
                if time.monotonic() > deadline:
                    raise CliError(f"plan job {job.get('id')} on the pickwise server at {self.url} did not finish "
                                   f"within {JOB_WAIT_S:g} s")
                time.sleep(delay)
                delay = min(1.0, delay * 2)
                job = self.answer("GET", f"/v1/plans/{job['id']}")
        except KeyboardInterrupt:
            self._cancel_job(job["id"])
            raise
        if job.get("status") == "done":
            return 200, job["result"]
        error = job.get("error") or {}
        code = str(error.get("error", ""))
        if code.endswith("infeasible") or code == "validation_error":  # as the inline plan answers them
            return (409 if code.endswith("infeasible") else 422), error
        # cancelled, its server stopped, ...: no HTTP status of the server's to quote
        raise CliError(f"plan job {job.get('id')} on the pickwise server at {self.url} ended {job.get('status')}: "
                       f"{error.get('detail') or code or 'no reason given'}")

    def _cancel_job(self, job_id: str) -> None:
        """Ctrl-C while polling: cancel the job, which would else hold one of the server's few places
        for jobs until it ended, and say what became of it (stderr)."""
        path = f"/v1/plans/{job_id}"
        try:
            status, _ = self.call("DELETE", path, timeout=CANCEL_TIMEOUT_S)
        except CliError:
            status = None
        if status == 200:
            note = f"cancelled plan job {job_id} on the pickwise server at {self.url}"
        elif status == 409:
            note = f"plan job {job_id} had already finished on the pickwise server at {self.url}"
        else:
            note = f"could not cancel plan job {job_id} on the pickwise server at {self.url} (DELETE {path} does)"
        print(f"interrupted: {note}", file=sys.stderr)


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def _field_errors(body: Any) -> list[tuple[str, str]]:
    """(dotted request field, message) of each error a validation refusal lists, when every one names
    a field of the body (`{"loc": ["body", "models"], "msg": ...}`); else []."""
    errors = body.get("errors") if isinstance(body, dict) and body.get("error") == "validation_error" else None
    if not isinstance(errors, list) or not errors:
        return []
    fields = []
    for error in errors:
        loc = error.get("loc") if isinstance(error, dict) else None
        if not isinstance(loc, list) or len(loc) < 2 or loc[0] != "body":
            return []
        fields.append((".".join(str(part) for part in loc[1:]), str(error.get("msg", ""))))
    return fields
