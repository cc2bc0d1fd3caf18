"""The Jupyter server behind the dashboard's Jupyter page: run it (managed) or reach it (external).

Kernels, sessions and notebooks are the Jupyter server's own, through its REST API
(``/api/kernels``, ``/api/sessions``, ``/api/contents``, ``/api/kernelspecs``), so what
the dashboard shows is what the server runs. In managed mode the console starts
``jupyter_server`` on loopback with the notebooks dir as root and a fresh random token,
and stops it with the console. When the server cannot be reached, every call raises
:class:`JupyterUnavailable` with the reason (the REST layer answers 503 with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json as _json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from engine.logs import get_logger

log = get_logger("jupyter")


class JupyterUnavailable(RuntimeError):
    """No Jupyter server to talk to; the message says why and how to fix it."""


class JupyterRequestError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _die_with_parent() -> None:
    """In the child: a SIGTERM when the console dies, even by kill -9, so no orphan keeps the port."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class JupyterGateway:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.cfg = settings.jupyter
        self.base_url: str | None = None
        self.token: str | None = None
        self.unavailable = "the Jupyter server is starting" if self.cfg.mode == "managed" else None
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._seen_sessions: dict[str, str] = {}
        if self.cfg.mode == "off":
            self.unavailable = "Jupyter is switched off (jupyter.mode = off)"
        elif self.cfg.mode == "external":
            if not self.cfg.url:
                self.unavailable = "jupyter.mode is external but jupyter.url is not set"
            else:
                self.base_url, self.token, self.unavailable = self.cfg.url.rstrip("/"), self.cfg.token, None

    @property
    def public_url(self) -> str | None:
        return (self.cfg.public_url or self.base_url or "").rstrip("/") or None

    # ---- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.cfg.mode != "managed":
            return
        try:
            await self._start_managed()
        except asyncio.CancelledError:
            await self.stop()  # never leave a server behind a console that stopped while it started
            raise

    async def _start_managed(self) -> None:
        try:
            import jupyter_server  # noqa: F401
        except ImportError:
            self.unavailable = "jupyter_server is not installed (pip install jupyter_server ipykernel)"
            log.warning(self.unavailable)
            return
        root = self.settings.notebooks_dir
        root.mkdir(parents=True, exist_ok=True)
        port = self.cfg.port or _free_port(self.cfg.host)
        self.token = secrets.token_urlsafe(24)
        self.base_url = f"http://{self.cfg.host}:{port}"
        log_path = self.settings.logs_dir / "jupyter.log"
        env = {**os.environ, "JUPYTER_TOKEN": self.token, "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config"),
               "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        args = [sys.executable, "-m", "jupyter_server", "--no-browser", f"--ServerApp.ip={self.cfg.host}",
                f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
                "--ServerApp.terminals_enabled=False"]  # notebooks, not a shell on the pipeline host
        if os.geteuid() == 0:  # containers and CI run as root; jupyter_server refuses that unless told
            args.append("--allow-root")
        token_file = root / ".jupyter-token"  # for people opening the server in a browser (it asks for it)
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        with open(log_path, "ab") as out:
            self._proc = await asyncio.create_subprocess_exec(*args, stdout=out, stderr=out, env=env,
                                                              stdin=asyncio.subprocess.DEVNULL,
                                                              start_new_session=True, preexec_fn=_die_with_parent)
        deadline = asyncio.get_running_loop().time() + self.cfg.startup_timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if self._proc.returncode is not None:
                self.unavailable = (f"the managed Jupyter server exited with code {self._proc.returncode} "
                                    f"(port {port} busy? see {log_path})")
                log.warning(self.unavailable)
                return
            try:
                await self._call("GET", "/api/status", check_ready=False)
                self.unavailable = None
                log.info("managed Jupyter server ready at %s (root %s)", self.base_url, root)
                return
            except (aiohttp.ClientError, JupyterRequestError, OSError):
                await asyncio.sleep(0.25)
        self.unavailable = f"the managed Jupyter server did not answer within {self.cfg.startup_timeout_s:.0f} s"
        log.warning(self.unavailable)

    async def stop(self) -> None:
        if self.cfg.mode == "managed":
            with contextlib.suppress(OSError):
                (self.settings.notebooks_dir / ".jupyter-token").unlink()
        if self._http is not None:
            await self._http.close()
            self._http = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()  # jupyter_server shuts its kernels down on SIGTERM
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
        if self.cfg.mode == "managed":
            self.unavailable = "the Jupyter server is stopped"

    # ---- REST ---------------------------------------------------------------------------------------
    async def _call(self, method: str, path: str, *, json: Any = None, check_ready: bool = True) -> Any:
        if check_ready and self.unavailable:
            raise JupyterUnavailable(self.unavailable)
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=8))
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        try:
            async with self._http.request(method, self.base_url + path, json=json, headers=headers) as resp:
                text = await resp.text()
                try:
                    body = _json.loads(text) if text.strip() else None
                except ValueError:
                    body = None
                if resp.status >= 400:
                    message = body.get("message") if isinstance(body, dict) else None
                    raise JupyterRequestError(resp.status, message or f"Jupyter answered HTTP {resp.status} "
                                                                      f"for {method} {path}")
                return body
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            if not check_ready:
                raise
            raise JupyterUnavailable(f"the Jupyter server at {self.base_url} is not reachable: {exc}") from None

    async def kernelspecs(self) -> dict[str, Any]:
        return (await self._call("GET", "/api/kernelspecs")).get("kernelspecs", {})

    async def kernels(self) -> list[dict[str, Any]]:
        specs = await self.kernelspecs()
        return [self._kernel(k, specs) for k in await self._call("GET", "/api/kernels")]

    async def kernel(self, kernel_id: str) -> dict[str, Any]:
        return self._kernel(await self._call("GET", f"/api/kernels/{quote(kernel_id)}"), await self.kernelspecs())

    async def start_kernel(self, name: str) -> dict[str, Any]:
        specs = await self.kernelspecs()
        if name not in specs:
            raise JupyterRequestError(422, f"name: no kernel spec {name!r} (available: {', '.join(sorted(specs))})")
        return self._kernel(await self._call("POST", "/api/kernels", json={"name": name}), specs)

    async def kernel_action(self, kernel_id: str, action: str) -> None:
        await self._call("POST", f"/api/kernels/{quote(kernel_id)}/{action}")

    async def shutdown_kernel(self, kernel_id: str) -> None:
        await self._call("DELETE", f"/api/kernels/{quote(kernel_id)}")

    @staticmethod
    def _kernel(k: dict[str, Any], specs: dict[str, Any]) -> dict[str, Any]:
        spec = (specs.get(k.get("name")) or {}).get("spec") or {}
        state = k.get("execution_state") or "starting"
        status = state if state in ("idle", "busy", "starting", "dead") else "error" if state else "starting"
        return {"id": k["id"], "name": k.get("name", ""), "display_name": spec.get("display_name", k.get("name")),
                "language": spec.get("language", ""), "status": status, "last_activity": k.get("last_activity"),
                "execution_count": k.get("execution_count", 0), "connections": k.get("connections", 0)}

    async def contents(self, path: str = "") -> list[dict[str, Any]]:
        listing = await self._call("GET", f"/api/contents/{quote(path)}?content=1")
        kernels = {s["notebook"]["path"]: s["kernel"]["id"] for s in await self.sessions()}
        return [self._entry(e, kernels) for e in listing.get("content") or []
                if not e["name"].startswith(".")]

    async def entry(self, path: str) -> dict[str, Any]:
        model = await self._call("GET", f"/api/contents/{quote(path)}?content=0")
        kernels = {s["notebook"]["path"]: s["kernel"]["id"] for s in await self.sessions()}
        return self._entry(model, kernels)

    async def delete(self, path: str) -> None:
        await self._call("DELETE", f"/api/contents/{quote(path)}")

    async def save_notebook(self, path: str, notebook_json: str) -> dict[str, Any]:
        model = {"type": "notebook", "format": "json", "content": _json.loads(notebook_json)}
        return self._entry(await self._call("PUT", f"/api/contents/{quote(path)}", json=model), {})

    @staticmethod
    def _entry(e: dict[str, Any], kernels: dict[str, str]) -> dict[str, Any]:
        return {"id": notebook_id(e["path"]), "name": e["name"], "path": e["path"], "type": e["type"],
                "created": e.get("created"), "last_modified": e.get("last_modified"), "size": e.get("size"),
                "kernel_id": kernels.get(e["path"]), "content_type": e.get("mimetype")}

    async def sessions(self) -> list[dict[str, Any]]:
        specs = await self.kernelspecs()
        return [self._session(s, specs) for s in await self._call("GET", "/api/sessions")]

    async def create_session(self, path: str, kernel_name: str = "python3") -> dict[str, Any]:
        body = {"path": path, "name": Path(path).name, "type": "notebook", "kernel": {"name": kernel_name}}
        return self._session(await self._call("POST", "/api/sessions", json=body), await self.kernelspecs())

    async def delete_session(self, session_id: str) -> None:
        await self._call("DELETE", f"/api/sessions/{quote(session_id)}")

    def _session(self, s: dict[str, Any], specs: dict[str, Any]) -> dict[str, Any]:
        kernel = self._kernel(s["kernel"], specs)
        # Jupyter Server's session model has no creation time: the first time this console saw it
        created = self._seen_sessions.setdefault(s["id"], kernel["last_activity"] or "")
        return {"id": s["id"], "notebook": {"name": s.get("name") or Path(s["path"]).name, "path": s["path"]},
                "kernel": kernel, "created": created or None}


def notebook_id(path: str) -> str:
    """A URL-safe id for a notebook path (the dashboard inserts ids unencoded)."""
    import base64

    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


def notebook_path(notebook_id_: str) -> str:
    import base64

    try:
        return base64.urlsafe_b64decode(notebook_id_ + "=" * (-len(notebook_id_) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise JupyterRequestError(404, f"no notebook {notebook_id_!r}") from None
