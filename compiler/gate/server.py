"""An OPA server as an engine, through opa-python-client (`fwc check --opa-url URL`).

The modules are uploaded under ids unique to this run and deleted afterwards; data
documents are written under their top-level keys.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from fwc.compiler.gate.modules import Module
from fwc.compiler.gate.regopy import EngineFailure

TIMEOUT_SECONDS = 60.0


def _client(url: str) -> Any:
    from opa_client.opa import OpaClient

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineFailure(f"--opa-url {url!r} is not an http(s) URL")
    secure = parts.scheme == "https"
    return OpaClient(
        host=parts.hostname,
        port=parts.port or (443 if secure else 8181),
        ssl=secure,
        timeout=TIMEOUT_SECONDS,
        retries=0,
    )


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text}
        return str(body.get("message", body)) if isinstance(body, dict) else str(body)
    message = getattr(exc, "message", None)
    return str(message or exc)


@contextmanager
def _session(url: str, modules: list[Module], data: dict[str, Any]) -> Iterator[Any]:
    client = _client(url)
    run = f"fwc-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    uploaded: list[str] = []
    try:
        for index, module in enumerate(modules):
            policy_id = f"{run}-{index}"
            try:
                client.update_policy_from_string(module.text, policy_id, rego_compat=False)
            except Exception as exc:  # the client raises requests and its own error types
                raise EngineFailure(f"{module.display}: {_reason(exc)}") from None
            uploaded.append(policy_id)
        for key, value in data.items():
            if not isinstance(value, dict):
                raise EngineFailure(f"data key `{key}` must hold an object for the OPA server")
            try:
                client.update_or_create_data(value, key)
            except Exception as exc:
                raise EngineFailure(f"data `{key}`: {_reason(exc)}") from None
        yield client
    finally:
        for policy_id in uploaded:
            try:
                client.delete_policy(policy_id)
            except Exception:  # cleanup of a server we do not own: best effort
                continue
        client.close_connection()


def _query(client: Any, query: str, input_doc: Any) -> Any:
    try:
        answer = client.ad_hoc_query(query, input_doc)
    except Exception as exc:
        raise EngineFailure(f"OPA server: {_reason(exc)}") from None
    results = answer.get("result") or []
    if not results:
        return None
    return results[0].get("x")


def evaluate(
    url: str, modules: list[Module], data: dict[str, Any], input_doc: Any, query: str
) -> Any:
    try:
        with _session(url, modules, data) as client:
            return _query(client, query, input_doc)
    except OSError as exc:
        raise EngineFailure(f"cannot reach the OPA server at {url}: {exc}") from None


def run_tests(
    url: str, modules: list[Module], data: dict[str, Any], tests: list[tuple[str, str]]
) -> list[tuple[str, str, str | None]]:
    results: list[tuple[str, str, str | None]] = []
    try:
        with _session(url, modules, data) as client:
            for package, name in tests:
                try:
                    value = _query(client, f"x := data.{package}.{name}", {"fwc_tests": True})
                except EngineFailure as exc:
                    results.append((package, name, str(exc)))
                    continue
                why = None if value is True else "undefined" if value is None else json.dumps(value)
                results.append((package, name, why))
    except OSError as exc:
        raise EngineFailure(f"cannot reach the OPA server at {url}: {exc}") from None
    return results
