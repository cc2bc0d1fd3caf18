"""Route declarations: one table feeds the aiohttp router, request validation and OpenAPI.

A handler is declared with its method, path, query model, body model, response
model and required role. The wrapper parses and validates the query string and
JSON body (400 for malformed JSON, 422 with field details for bad values) and
serialises pydantic responses, so handlers only contain their own logic.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from contimg_console.api.errors import ApiError, validation_details, validation_message

Role = Literal["public", "viewer", "operator", "admin"]
Handler = Callable[..., Awaitable[Any]]

_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


@dataclass
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    role: Role
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    response: Any
    status: int
    content_type: str
    alias_of: str | None = None
    name: str = ""
    responses: dict[int, str] = field(default_factory=dict)
    read_only: bool = False

    @property
    def needs_user(self) -> bool:
        """A viewer-level write (comments, saved queries, ratings…) acts for a person, never for anonymous."""
        return self.role == "viewer" and self.method != "GET" and not self.read_only

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(lambda mo: "{" + mo.group(1) + "}", self.path)

    @property
    def path_params(self) -> list[str]:
        return _PARAM.findall(self.path)


def _query_dict(request: web.Request, model: type[BaseModel]) -> dict[str, Any]:
    """Collect query values; repeated and bracketed keys (``tags[]=a``) become lists."""
    out: dict[str, Any] = {}
    for key in set(request.query.keys()):
        values = request.query.getall(key)
        name = key[:-2] if key.endswith("[]") else key
        info = model.model_fields.get(name)
        is_list = info is not None and _is_list(info.annotation)
        if is_list:
            out.setdefault(name, []).extend(values)
        else:
            out[name] = values[-1]
    return out


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (list, tuple):
        return True
    return any(_is_list(a) for a in get_args(annotation))


class Router:
    """Collects RouteSpecs; installs them on an aiohttp app; renders OpenAPI 3.1."""

    def __init__(self) -> None:
        self.routes: list[RouteSpec] = []

    def route(self, method: str, path: str, *, summary: str, response: Any = None, query: type[BaseModel] | None = None,
              body: type[BaseModel] | None = None, role: Role = "viewer", tags: tuple[str, ...] = (),
              status: int = 200, content_type: str = "application/json",
              responses: dict[int, str] | None = None, aliases: tuple[str, ...] = (),
              read_only: bool = False) -> Callable[[Handler], Handler]:
        """``read_only=True`` marks a non-GET viewer route that only reads (a query run, a preview), which
        anonymous readers may call; every other viewer-level write needs a logged-in caller."""
        def deco(fn: Handler) -> Handler:
            spec = RouteSpec(method.upper(), path, fn, summary, tags, role, query, body, response, status,
                             content_type, name=fn.__name__, responses=dict(responses or {}), read_only=read_only)
            self.routes.append(spec)
            for alias in aliases:
                self.routes.append(RouteSpec(method.upper(), alias, fn, summary + " (alias)", tags, role, query, body,
                                             response, status, content_type, alias_of=path,
                                             name=fn.__name__ + "_alias", responses=dict(responses or {}),
                                             read_only=read_only))
            return fn
        return deco

    # ---- installing ------------------------------------------------------
    def install(self, app: web.Application, authorize: Callable[[web.Request, Role], Awaitable[Any]]) -> None:
        for spec in self.routes:
            app.router.add_route(spec.method, spec.path, self._wrap(spec, authorize))

    def _wrap(self, spec: RouteSpec, authorize: Callable[[web.Request, Role], Awaitable[Any]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            principal = await authorize(request, spec.role)
            if spec.needs_user and principal.via == "anonymous":
                # Before the query string and body are read: an anonymous caller learns nothing of the schema.
                raise ApiError(401, f"{spec.method} {spec.openapi_path} needs a logged-in user: send "
                                    "'Authorization: Bearer <token>' or 'X-API-Key'", code="UNAUTHORIZED")
            kwargs: dict[str, Any] = {}
            if spec.query is not None:
                try:
                    kwargs["query"] = spec.query.model_validate(_query_dict(request, spec.query))
                except ValidationError as exc:
                    raise ApiError(422, validation_message(exc, "query string"),
                                   details=validation_details(exc, "query")) from None
            if spec.body is not None:
                kwargs["body"] = await parse_body(request, spec.body)
            if "principal" in spec.handler.__code__.co_varnames:
                kwargs["principal"] = principal
            result = await spec.handler(request, **kwargs)
            if isinstance(result, list) and len(result) > 500:  # big listings serialise off the loop
                return await asyncio.to_thread(to_response, result, spec.status)
            return to_response(result, spec.status)
        handler.__name__ = spec.name
        return handler

    # ---- OpenAPI ---------------------------------------------------------
    def openapi(self, *, title: str, version: str, description: str = "") -> dict[str, Any]:
        schemas: dict[str, Any] = {}
        paths: dict[str, dict[str, Any]] = {}
        for spec in self.routes:
            op: dict[str, Any] = {
                "operationId": f"{spec.name}_{spec.method.lower()}_{abs(hash(spec.path)) % 10**8}",
                "summary": spec.summary,
                "tags": list(spec.tags) or ["misc"],
                "parameters": [],
                "responses": {},
            }
            for name in spec.path_params:
                op["parameters"].append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
            if spec.query is not None:
                qschema = _schema_for(spec.query, schemas)
                props = schemas[spec.query.__name__].get("properties", {})
                required = set(schemas[spec.query.__name__].get("required", []))
                for pname, pschema in props.items():
                    param = {"name": pname, "in": "query", "required": pname in required, "schema": pschema}
                    if _is_array_schema(pschema):
                        param["style"] = "form"
                        param["explode"] = True
                    op["parameters"].append(param)
                del qschema
            if spec.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema_for(spec.body, schemas)}},
                }
            ok: dict[str, Any] = {"description": "OK"}
            if spec.status == 204:
                ok = {"description": "No content"}
            elif spec.response is not None:
                ok["content"] = {spec.content_type: {"schema": _schema_for(spec.response, schemas)}}
            elif spec.content_type != "application/json":
                ok["content"] = {spec.content_type: {"schema": {"type": "string", "format": "binary"}}}
            op["responses"][str(spec.status)] = ok
            error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
            codes = {400, 422, 500} | set(spec.responses)
            if spec.role != "public":
                codes |= {401, 403}
            if spec.path_params:
                codes.add(404)
            if spec.body is not None:
                codes.add(413)
            for code in sorted(codes):
                op["responses"][str(code)] = {
                    "description": spec.responses.get(code, _describe(code)),
                    "content": {"application/json": {"schema": error_ref}},
                }
            if spec.role != "public":
                op["security"] = [{"bearer": []}, {"apiKey": []}, {}]
            paths.setdefault(spec.openapi_path, {})[spec.method.lower()] = op
        schemas["ErrorResponse"] = _ERROR_SCHEMA
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version, "description": description},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                },
            },
        }


def _describe(code: int) -> str:
    return {400: "Malformed request", 401: "Authentication required", 403: "Not permitted for this role",
            404: "Not found", 409: "Invalid state transition", 413: "Body too large",
            422: "Validation failed", 500: "Internal error", 501: "Not implemented"}.get(code, "Error")


def _is_array_schema(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "array":
        return True
    return any(_is_array_schema(s) for s in schema.get("anyOf", []))


def _schema_for(tp: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema (2020-12, as OpenAPI 3.1 uses) of a model or type; models go to components."""
    if isinstance(tp, dict):
        return tp
    adapter = TypeAdapter(tp)
    schema = adapter.json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, sub in schema.pop("$defs", {}).items():
        _put(schemas, name, sub)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        _put(schemas, tp.__name__, schema)
        return {"$ref": f"#/components/schemas/{tp.__name__}"}
    return schema


def _put(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    """Two different models under one component name would silently describe one of them wrongly."""
    if name in schemas and schemas[name] != schema:
        raise ValueError(f"OpenAPI component name clash: two different models are called {name!r}")
    schemas[name] = schema


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail", "message", "code", "http_status"],
    "properties": {
        "detail": {"type": "string"},
        "message": {"type": "string"},
        "code": {"type": "string"},
        "http_status": {"type": "integer"},
        "user_message": {"type": "string"},
        "action": {"type": "string"},
        "ref_id": {"type": "string"},
        "details": {"type": "object"},
        "trace_id": {"type": "string"},
        "doc_anchor": {"type": "string"},
    },
}


async def parse_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    raw = await request.read()  # raises HTTPRequestEntityTooLarge past client_max_size
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed JSON body: {exc}", code="MALFORMED_JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, "request body must be a JSON object", code="VALIDATION_FAILED")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, validation_message(exc, "body"), details=validation_details(exc, "body")) from None


def to_response(result: Any, status: int = 200) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if status == 204 or result is None and status == 204:
        return web.Response(status=204)
    payload = _jsonable(result)
    return web.Response(text=json.dumps(payload, separators=(",", ":")), status=status,
                        content_type="application/json")


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        if value and isinstance(value[0], BaseModel):
            return [v.model_dump(mode="json") for v in value]
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return TypeAdapter(Any).dump_python(value, mode="json")
