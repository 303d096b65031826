"""The web page's HTTP layer: a FastAPI app over ``guideopt.api`` (``guideopt serve``).

Endpoints (all JSON unless noted; request bodies are a :class:`PlanRequest`, the same
structure as a constraints file):

* ``GET /`` — the page (``static/index.html`` + ``static/app.js``).
* ``GET /api/catalog`` — model, GPU and framework ids with a few fields, the precisions,
  the bundled length mixes (for request streams), the objective orders, the presets, and
  which optional features are installed.
* ``POST /api/plan`` — the plan, exactly as ``guideopt plan --json`` prints it (200).
  A request the planner accepts but cannot satisfy is also 200, with ``status:
  "infeasible"``, ``explanation`` and ``conflicts`` (the key paths in conflict), as in
  ``guideopt plan --json``: it is an answer, not a failure.
* ``POST /api/constraints`` — the request as a YAML constraints file (an attachment;
  ``guideopt solve`` reads it back into the same request).
* ``POST /api/launch`` — a zip of launch scripts, one per plan group, and a PLAN.md
  (``guideopt.io.launch.emit``; 501 when that module is missing).
* ``POST /api/pareto`` — an SVG chart of the (cost, throughput) and (latency, throughput)
  Pareto fronts (``guideopt.analyses.pareto``; 501 when it or matplotlib is missing).
* ``GET /api/docs`` — these endpoints on a plain HTML page (``web.docs``: nothing loaded
  from a CDN, so it works offline); ``GET /api/openapi.json`` — their OpenAPI description.

Errors: a bad request is 422 ``{"field": "workload.input_len", "message": "..."}`` (the
field is a key path of the request); an unexpected error is 500 ``{"message": ...}``
with the traceback in the server's log only — never in a response.
Only catalog model ids and length mixes are accepted here: the server reads no local config.json or
trace file that a request names.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import os
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import yaml

from guideopt import api
from guideopt.catalog import Catalog, length_mix_ids, load_catalog, load_length_mix
from guideopt.errors import GuideoptError, GuideoptWarning, NoFeasiblePlanError
from guideopt.model.dtype import Dtype
from guideopt.model.keypath import leading_key
from guideopt.model.plan import PlanResult, infeasible_json
from guideopt.model.request import PlanRequest
from guideopt.web import worker
from guideopt.web.bodies import FieldError, parse_request
from guideopt.web.docs import OPENAPI_URL, docs_html
from guideopt.web.middleware import INTERNAL_ERROR, CatchAll
from guideopt.web.presets import OBJECTIVE_ORDERS, PRESETS

try:  # endpoint annotations are resolved in this module's namespace
    from starlette.requests import Request
except ImportError:  # pragma: no cover - without the web extra
    Request = Any  # type: ignore[misc,assignment]

# FastAPI is imported inside create_app(): the helpers here (solve, constraints_yaml,
# catalog_json; parse_request from web.bodies) work, and this module imports, without the web extra.

log = logging.getLogger("guideopt.web")

SHIPPED_CALIBRATION = "shipped (catalogs/calibration.yaml)"  # what the page names when no overlay is given
STATIC_DIR = Path(__file__).resolve().parent / "static"
LAUNCH_MISSING = "launch commands are not available in this installation (guideopt.io.launch is missing)"
PARETO_MISSING = "the Pareto chart is not available in this installation (it needs guideopt.analyses.pareto and matplotlib)"


class NotAvailable(Exception):
    """An optional feature (launch commands, Pareto chart) is not installed: 501."""


def _optional_module(name: str) -> Any | None:
    try:
        if importlib.util.find_spec(name) is None:
            return None
        return importlib.import_module(name)
    except Exception:  # a broken optional module must not break the page
        log.exception("cannot import optional module %s", name)
        return None


# ---------------------------------------------------------------------- planning


def _leading_field(exc: GuideoptError) -> tuple[str, str]:
    field = getattr(exc, "field", None)
    if field:
        return field, getattr(exc, "problem", str(exc))
    message = str(exc)
    head = leading_key(message)
    return (head, message[len(head) + 2 :]) if head else ("request", message)


def solve(request: PlanRequest, cat: Catalog | None = None) -> dict[str, Any]:
    """The JSON of ``guideopt plan --json`` for a request (infeasible included); model
    caveats are listed under ``warnings``."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GuideoptWarning)
        try:
            out: dict[str, Any] = api.plan(request, cat).model_dump()
        except NoFeasiblePlanError as exc:
            objective = [t.value for t in request.objective]
            out = infeasible_json(objective, str(exc), list(exc.conflicts), round(time.perf_counter() - start, 6))
        except GuideoptError as exc:
            raise FieldError(*_leading_field(exc)) from None
    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, GuideoptWarning)))
    if notes:
        out["warnings"] = notes
    return out


def launch_for(request: PlanRequest, cat: Catalog | None = None) -> bytes:
    """The launch zip of a request's plan (a request with no plan is a FieldError)."""
    try:
        result = api.plan(request, cat)
    except NoFeasiblePlanError as exc:
        raise FieldError(exc.conflicts[0] if exc.conflicts else "request", f"no feasible plan: {exc}") from None
    except GuideoptError as exc:
        raise FieldError(*_leading_field(exc)) from None
    return launch_zip(request, result)


def pareto_for(request: PlanRequest, cat: Catalog | None = None) -> bytes:
    """The Pareto SVG of a request (a request with no plan is a FieldError)."""
    try:
        return pareto_svg(request, cat)
    except NoFeasiblePlanError as exc:
        raise FieldError(exc.conflicts[0] if exc.conflicts else "request", f"no feasible plan: {exc}") from None
    except GuideoptError as exc:
        raise FieldError(*_leading_field(exc)) from None


def constraints_yaml(request: PlanRequest) -> str:
    """The request as a YAML constraints file (``guideopt solve`` reads it back unchanged)."""
    data = request.model_dump(mode="json", exclude_none=True)
    head = (
        "# guideopt constraints file, saved from the web page.\n"
        "# Plan again with:  guideopt solve guideopt-constraints.yaml\n"
        "# Keys: `guideopt schema`; format: shared/docs/CONTRACT.md (constraints files).\n"
    )
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)


def catalog_json(cat: Catalog | None = None, calibration: str = SHIPPED_CALIBRATION) -> dict[str, Any]:
    cat = cat or load_catalog()
    return {
        "calibration": calibration,
        "models": [
            {"id": m.id, "num_params": m.num_params, "num_active_params": m.num_active_params, "num_layers": m.num_layers}
            for m in sorted(cat.models.values(), key=lambda m: m.id.lower())
        ],
        "gpus": [
            {"id": g.id, "name": g.name, "vendor": g.vendor.value, "memory_gb": round(g.memory_gb, 2), "usd_per_hour": g.usd_per_hour}
            for g in sorted(cat.gpus.values(), key=lambda g: g.id)
        ],
        "frameworks": [
            {"id": f.id, "name": f.name, "version": f.version, "vendors": list(f.vendors)}
            for f in sorted(cat.frameworks.values(), key=lambda f: f.id)
        ],
        "precisions": [d.value for d in Dtype],
        "length_mixes": [{"id": mix_id, "name": load_length_mix(mix_id).name} for mix_id in length_mix_ids()],
        "objectives": OBJECTIVE_ORDERS,
        "presets": PRESETS,
        "features": {"launch": launch_available(), "pareto": pareto_available()},
    }


# ---------------------------------------------------------------------- optional features


def launch_available() -> bool:
    mod = _optional_module("guideopt.io.launch")
    return mod is not None and hasattr(mod, "emit")


def launch_zip(request: PlanRequest, result: PlanResult) -> bytes:
    """A zip of ``guideopt.io.launch.emit``'s output: one launch script per plan group and a PLAN.md."""
    mod = _optional_module("guideopt.io.launch")
    if mod is None or not launch_available():
        raise NotAvailable(LAUNCH_MISSING)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="guideopt-web-") as tmp:
        paths = mod.emit(result, tmp, request=request)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                info = zipfile.ZipInfo(f"guideopt-launch/{Path(path).name}", date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (os.stat(path).st_mode & 0o777) << 16  # keep the scripts executable
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, Path(path).read_bytes())
    return buffer.getvalue()


def pareto_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def pareto_svg(request: PlanRequest, cat: Catalog | None = None) -> bytes:
    """Both Pareto fronts of a request (``guideopt.analyses.pareto``) drawn as SVG."""
    if not pareto_available():
        raise NotAvailable(PARETO_MISSING)
    from guideopt.analyses.pareto import pareto_plans
    from guideopt.io.plots import plot_pareto

    front = pareto_plans(request, cat)
    with tempfile.TemporaryDirectory(prefix="guideopt-web-") as tmp:
        path = os.path.join(tmp, "pareto.svg")
        try:
            plot_pareto(front, path)
        except GuideoptError as exc:  # e.g. the plotting library cannot be loaded
            raise NotAvailable(f"the Pareto chart cannot be drawn here ({exc})") from None
        return Path(path).read_bytes()


# ---------------------------------------------------------------------- the app


def create_app(catalog: Catalog | None = None, calibration: str = SHIPPED_CALIBRATION) -> Any:
    """The FastAPI app: the page at ``/``, the JSON API under ``/api``. ``catalog``: the one to
    plan with (e.g. with a user's calibration overlay, ``guideopt serve --calibration FILE``),
    named on the page by ``calibration``."""
    cat = catalog or load_catalog()
    from fastapi import Body, FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(
        title="guideopt",
        description="Plan LLM deployments (GUIDE): the web page's API.",
        version=_version(),
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN (blank offline): docs_html instead
        redoc_url=None,
        openapi_url=OPENAPI_URL,
    )
    app.add_middleware(CatchAll)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(FieldError)
    async def _on_field_error(_, exc: FieldError):
        return JSONResponse({"field": exc.field, "message": exc.message}, status_code=422)

    @app.exception_handler(NotAvailable)
    async def _on_not_available(_, exc: NotAvailable):
        return JSONResponse({"message": str(exc)}, status_code=501)

    @app.exception_handler(RequestValidationError)
    async def _on_bad_body(_, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = next((f" at character {p}" for p in first.get("loc", ())[1:] if isinstance(p, int)), "")
        why = first.get("ctx", {}).get("error") or first.get("msg", "not valid")
        message = f"the body is not valid JSON{where} ({why}; send a JSON object with the structure of a constraints file)"
        return JSONResponse({"field": "request", "message": message}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(_, exc: StarletteHTTPException):
        if exc.status_code == 400:  # the body could not be parsed at all (e.g. nested too deeply)
            message = f"the body cannot be read ({exc.detail}; send a JSON object with the structure of a constraints file)"
            return JSONResponse({"field": "request", "message": message}, status_code=422)
        return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(worker.WorkerTimeout)
    async def _on_timeout(_, exc: worker.WorkerTimeout):
        return JSONResponse({"message": f"{exc} (narrow the request: fewer GPU types, a smaller top)"}, status_code=503)

    @app.exception_handler(worker.WorkerError)
    async def _on_worker_error(_, exc: worker.WorkerError):
        return JSONResponse({"message": INTERNAL_ERROR}, status_code=500)

    @app.exception_handler(worker.ClientGone)
    async def _on_client_gone(_, exc: worker.ClientGone):
        return Response(status_code=499)  # nobody reads it: the client has left

    body = Body(None, description="a PlanRequest: the structure of a constraints file (`guideopt schema`)")

    async def stoppable(http: Request, func: Any, request: PlanRequest) -> Any:
        return await worker.run_stoppable(func, (request, cat), http.is_disconnected, expected=(FieldError, NotAvailable))

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/api/docs", include_in_schema=False)
    def docs():
        return HTMLResponse(docs_html(app.openapi()))

    @app.get("/api/catalog")
    def get_catalog():
        """Model, GPU and framework ids (with a few fields), precisions, objective orders and presets."""
        return JSONResponse(catalog_json(cat, calibration))

    @app.post("/api/plan")
    async def post_plan(http: Request, payload: Any = body):
        """The JSON of `guideopt plan --json`; infeasible is 200 with status, explanation and conflicts."""
        return JSONResponse(await stoppable(http, solve, parse_request(payload, cat, await http.body())))

    @app.post("/api/constraints")
    async def post_constraints(http: Request, payload: Any = body):
        """The request as a YAML constraints file, for `guideopt solve FILE`."""
        text = constraints_yaml(parse_request(payload, cat, await http.body()))
        return Response(
            text, media_type="application/yaml", headers={"Content-Disposition": 'attachment; filename="guideopt-constraints.yaml"'}
        )

    @app.post("/api/launch")
    async def post_launch(http: Request, payload: Any = body):
        """A zip of launch scripts (one per plan group) and a PLAN.md; 501 without guideopt.io.launch."""
        request = parse_request(payload, cat, await http.body())
        if not launch_available():
            raise NotAvailable(LAUNCH_MISSING)
        return Response(
            await stoppable(http, launch_for, request),
            media_type="application/zip",
            headers={"Content-Disposition": 'attachment; filename="guideopt-launch.zip"'},
        )

    @app.post("/api/pareto")
    async def post_pareto(http: Request, payload: Any = body):
        """An SVG chart of the Pareto front of a request; 501 without guideopt.analyses.pareto."""
        return Response(await stoppable(http, pareto_for, parse_request(payload, cat, await http.body())), media_type="image/svg+xml")

    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("guideopt")
    except Exception:
        return "0"
