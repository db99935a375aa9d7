"""The retrieval service's HTTP API (FastAPI) over a :class:`core.serve.service.Service`.

Products, their photos and embeddings, similar products, text and photo search, recommendations for
known and new customers, and new products added without retraining. Text and photo queries share
encoder passes (:class:`core.serve.batching.MicroBatcher`) and are remembered (:class:`core.serve.batching.LRUCache`);
numerical work runs on worker threads, off the event loop. A watcher swaps to a newly published version
(:mod:`core.serve.release`) without a restart: a request keeps the version it started with to the end.
Prometheus metrics at ``/metrics``. ``python -m core serve`` runs it on uvicorn.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.astlock import guard_ast_parse
from core.embeddings.backbone import ImageError
from core.recs.contract import ADD_PRODUCT
from core.serve.errors import echo, listed, validation_errors
from core.serve.guard import Guard
from core.serve.photos import PHOTO_FORMATS, photo_error, photo_suffix
from core.serve.release import Hit, Release
from core.serve.schemas import (MAX_K, PRODUCT_ID, EmbeddingQuery, Kind, NewCustomer, TextQuery,
                                parse_attributes)
from core.serve.service import Busy, NotReady, Service

log = logging.getLogger(__name__)

MAX_PROBLEMS = 20  # problems listed by /readyz (n_problems counts them all)


def create_app(service: Service | None = None, start: bool = True) -> FastAPI:
    """The FastAPI app over ``service`` (a new one of the default config if None). With ``start`` the
    service loads its version and watches for new ones while the app runs (lifespan)."""
    guard_ast_parse()  # request threads and the release watcher load .npz artefacts (numpy parses their headers)
    service = service or Service()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if start:
            service.start()
        yield
        service.stop()

    # FastAPIOffline: FastAPI with /docs and /redoc served from assets shipped in the package, not a CDN
    app = FastAPIOffline(title="Atelier retrieval service", lifespan=lifespan, version="1",
                  description="Products, similar products, text and photo search, recommendations for known and "
                              "new customers, and products added without retraining, over the catalogue's "
                              "current artefact version (published by `python -m core build`).")
    app.state.service = service
    app.add_middleware(Guard, service=service, router=app.router)
    _error_handlers(app)
    _status_routes(app, service)
    _product_routes(app, service)
    _search_routes(app, service)
    _recommendation_routes(app, service)
    _embedding_routes(app, service)
    _adding_routes(app, service)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Error replies: 503 with Retry-After while not ready or busy, validation errors and HTTP errors with
    what they echo of the request bounded."""

    @app.exception_handler(NotReady)
    async def not_ready(_request, e: NotReady):
        return JSONResponse({"detail": f"not ready: {e}"}, 503, headers={"Retry-After": "5"})

    @app.exception_handler(Busy)
    async def busy(_request, e: Busy):
        return JSONResponse({"detail": str(e)}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, e: RequestValidationError):
        return JSONResponse({"detail": validation_errors(e.errors())}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        # FastAPI answers 400 for a JSON body it cannot decode as text (not UTF-8) or that is nested too deeply
        # for its parser, and 422 for one that is not JSON: all three are malformed JSON, 422.
        if e.status_code == 400 and isinstance(e.__cause__, (UnicodeDecodeError, RecursionError)):
            why = "not UTF-8" if isinstance(e.__cause__, UnicodeDecodeError) else "nested too deeply"
            return JSONResponse({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: "
                                             f"the body is {why}", "input": None}]}, 422)
        if isinstance(e.detail, str):
            e = StarletteHTTPException(e.status_code, echo(e.detail, 1000), e.headers)
        return await http_exception_handler(request, e)


def _status_routes(app: FastAPI, service: Service) -> None:
    """/healthz, /readyz and /metrics."""
    metrics = service.metrics

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="A version is loaded, and which")
    def readyz():
        release = service.release
        if release is None:
            return JSONResponse({"ready": False, "detail": service.load_error or "loading the artefact version"},
                                503, headers={"Retry-After": "5"})
        m = release.manifest
        return {"ready": True, "version": release.version, "catalog": release.catalog.name,
                "backbone": m["backbone"], "models": list(release.models), "models_note": release.models_note,
                "kinds": list(release.kinds),
                "cutoff": m["cutoff"], "products": len(release.product_ids), "added_products": len(release.added),
                "problems": service.added_problems[:MAX_PROBLEMS], "n_problems": len(service.added_problems),
                "published": m.get("published"), "loaded_at": release.loaded_at}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _product_routes(app: FastAPI, service: Service) -> None:
    """A product, its photo and its similar products."""
    metrics = service.metrics

    # The lookups below (a product, its precomputed neighbours, a known customer's precomputed list) take
    # microseconds, so they run on the event loop and answer with JSON directly: a thread hop and FastAPI's
    # response validation would cost them more than the work. What is not a lookup goes to a heavy thread.

    @app.get("/products/{product_id}", summary="A product's title, description and attributes")
    async def product(product_id: str) -> JSONResponse:
        release = service.ready()
        with metrics.stage("/products/{product_id}", "lookup"):
            try:
                return JSONResponse({**_product(release.product(product_id)), "version": release.version})
            except KeyError:
                raise _unknown_products([product_id]) from None

    @app.get("/products/{product_id}/image", summary="A product's photo", response_class=FileResponse)
    def image(product_id: str):
        release = service.ready()
        try:
            path = release.product(product_id)["image_path"]
        except KeyError:
            raise _unknown_products([product_id]) from None
        if not path:
            raise HTTPException(404, f"product '{product_id}' has no photo")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/products/{product_id}/similar", summary="Products most similar to one product")
    async def similar(product_id: str, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10, kind: Kind = "hybrid"
                      ) -> JSONResponse:
        release = service.ready()
        _check_kind(release, kind)
        with metrics.stage("/products/{product_id}/similar", "search"):
            try:
                hits = (release.similar(product_id, kind, k) if release.similar_is_lookup(product_id, kind, k)
                        else await service.background(release.similar, product_id, kind, k))
            except KeyError:
                raise _unknown_products([product_id]) from None
        with metrics.stage("/products/{product_id}/similar", "lookup"):
            out = {"id": product_id, "kind": kind, "version": release.version, "results": _hits(release, hits)}
        if not hits and kind in ("image", "texture"):
            out["note"] = f"product '{product_id}' has no photo, so no place in the {kind} space"
        return JSONResponse(out)


def _search_routes(app: FastAPI, service: Service) -> None:
    """Text and photo search."""
    metrics = service.metrics

    @app.post("/search/text", summary="Products matching a text query")
    async def search_text(query: TextQuery) -> dict:
        release = service.ready()
        _check_kind(release, query.kind)
        with metrics.stage("/search/text", "encode"):
            vector = await service.text_vector(release, query.text)
        with metrics.stage("/search/text", "search"):
            hits = await service.background(release.search, vector, query.kind, query.k)
        with metrics.stage("/search/text", "lookup"):
            return {"text": query.text, "kind": query.kind, "version": release.version,
                    "results": _hits(release, hits)}

    @app.post("/search/image", summary="Products matching an uploaded photo (multipart field 'file')")
    async def search_image(file: Annotated[UploadFile, File(description=f"a photo: {PHOTO_FORMATS}")],
                           k: Annotated[int, Form(ge=1, le=MAX_K)] = 10, kind: Annotated[Kind, Form()] = "image"
                           ) -> dict:
        release = service.ready()
        _check_kind(release, kind)
        data = await file.read()
        # the header (format, size) before any decoding; off the event loop: PNG text chunks are inflated
        await service.background(photo_suffix, data, service.cfg.max_photo_pixels)
        with metrics.stage("/search/image", "encode"):
            try:
                vector = await service.photo_vector(release, data)
                descriptor = (await service.background(service.photo_descriptor, release, data)
                              if kind == "texture" else None)
            except ImageError as e:
                raise photo_error(e) from None
        with metrics.stage("/search/image", "search"):
            hits = await service.background(release.search, vector, kind, k, descriptor)
        with metrics.stage("/search/image", "lookup"):
            return {"kind": kind, "version": release.version, "results": _hits(release, hits)}


def _recommendation_routes(app: FastAPI, service: Service) -> None:
    """Recommendations for a known customer and for a new one."""
    metrics = service.metrics

    @app.get("/customers/{customer_id}/recommendations", summary="Top-k products for a known customer")
    async def customer_recommendations(customer_id: str, k: Annotated[int, Query(ge=1, le=MAX_K)] = 12,
                                       model: str | None = None, exclude_bought: bool = False) -> JSONResponse:
        release = service.ready()
        name = _model(release, model)
        with metrics.stage("/customers/{customer_id}/recommendations", "search"):
            try:
                hits = (release.recommend(customer_id, name, k, exclude_bought)
                        if release.recommend_is_lookup(name, k, exclude_bought)
                        else await service.background(release.recommend, customer_id, name, k, exclude_bought))
            except KeyError:
                raise HTTPException(404, f"unknown customer id '{echo(customer_id)}' (a new customer: POST "
                                         "/recommendations with the products they like)") from None
        with metrics.stage("/customers/{customer_id}/recommendations", "lookup"):
            return JSONResponse({"customer_id": customer_id, "model": name, "exclude_bought": exclude_bought,
                                 "purchases": int(len(release.data.history(customer_id))),
                                 "version": release.version, "results": _hits(release, hits)})

    @app.post("/recommendations", summary="Top-k products for a new or anonymous customer")
    async def new_customer_recommendations(body: NewCustomer) -> dict:
        release = service.ready()
        name = _model(release, body.model)
        if not body.liked and not body.text:
            raise HTTPException(422, "say what the customer likes: 'liked' product ids, a 'text', or both")
        missing = release.missing(body.liked)
        if missing:
            raise _unknown_products(missing)
        vector = None
        if body.text:
            with metrics.stage("/recommendations", "encode"):
                vector = await service.text_vector(release, body.text)
        with metrics.stage("/recommendations", "search"):
            hits = await service.background(release.recommend_new, body.liked, vector, name, body.k)
        with metrics.stage("/recommendations", "lookup"):
            return {"model": name, "liked": body.liked, "text": body.text, "version": release.version,
                    "results": _hits(release, hits)}


def _embedding_routes(app: FastAPI, service: Service) -> None:
    """Products' vectors."""
    metrics = service.metrics

    @app.post("/embeddings", summary="Products' vectors in an embedding space or a recommender's item space")
    def embeddings(body: EmbeddingQuery) -> dict:
        release = service.ready()
        if body.kind not in release.kinds and body.kind not in release.models:
            raise HTTPException(422, f"unknown kind '{body.kind}'; one of {', '.join(release.kinds)}, or a served "
                                     f"model: {', '.join(release.models) or f'none ({release.models_note})'}")
        if body.kind in release.models and release.models[body.kind].item_vectors() is None:
            spaces = [m for m, model in release.models.items() if model.item_vectors() is not None]
            raise HTTPException(422, f"model '{body.kind}' has no item vectors (it scores without an item space); "
                                     f"one of {', '.join(release.kinds)}, or a model with vectors: "
                                     f"{', '.join(spaces) or 'none'}")
        missing = release.missing(body.ids)
        if missing:
            raise _unknown_products(missing)
        with metrics.stage("/embeddings", "lookup"):
            vectors = release.vectors(body.ids, body.kind)
        dim = next((len(v) for v in vectors if v is not None), 0)
        return {"kind": body.kind, "dim": dim, "version": release.version,
                "embeddings": [{"id": i, "vector": None if v is None else np.round(v.astype(np.float64), 6).tolist()}
                               for i, v in zip(body.ids, vectors)]}


def _adding_routes(app: FastAPI, service: Service) -> None:
    """POST /products: a product added without retraining."""
    metrics = service.metrics

    @app.post("/products", status_code=201, summary="Add a product: embedded by the frozen models, no retraining")
    def add_product(product_id: Annotated[str, Form(alias="id", description="new product id")],
                    title: Annotated[str, Form(max_length=200)],
                    description: Annotated[str, Form(max_length=2000)] = "",
                    attributes: Annotated[str, Form(description='JSON object, e.g. {"colour": "Black"}')] = "{}",
                    variant_of: Annotated[str, Form(description="id of a catalogue product this one is a colour "
                                                                "variant of (the recommenders link the two)")] = "",
                    photo: Annotated[UploadFile | None, File(description=PHOTO_FORMATS)] = None) -> dict:
        release = service.ready()
        product_id, title = product_id.strip(), title.strip()
        if not PRODUCT_ID.match(product_id):
            raise HTTPException(422, f"product id '{echo(product_id)}' is not valid: 1-64 letters, digits, '.', "
                                     "'_' or '-', starting with a letter or digit")
        if not title:
            raise HTTPException(422, "a product needs a title")
        record = {"id": product_id, "title": title, "description": description.strip(),
                  "attributes": parse_attributes(attributes, release.attribute_columns)}
        if variant_of.strip():
            group = release.group_of(variant_of.strip())
            if group is None:
                raise HTTPException(422, f"variant_of: '{echo(variant_of.strip())}' is not a product of the "
                                         "catalogue")
            record["attributes"]["group_id"] = group
        if release.has_product(product_id):  # before the photo is looked at: a duplicate costs no decoding
            raise HTTPException(409, f"product id '{product_id}' already exists")
        data = photo.file.read() if photo is not None else b""
        suffix = photo_suffix(data, service.cfg.max_photo_pixels) if photo is not None else ""
        with service._adding:
            release = service.ready()  # a swap may have happened while we waited
            if release.has_product(product_id):
                raise HTTPException(409, f"product id '{product_id}' already exists")
            with metrics.stage("/products", "encode"), service.decoding():
                try:
                    vectors = release.encode_product(record, data or None)
                except ImageError as e:
                    raise photo_error(e) from None
            try:
                stored = service.added.append(record, data or None, suffix)
            except ValueError:  # stored before, but not in this version (see /readyz problems)
                raise HTTPException(409, f"product id '{product_id}' was already added; it is not served by "
                                         "this version: GET /readyz lists why under 'problems'") from None
            except OSError as e:
                log.exception("storing added product %s failed", product_id)
                raise HTTPException(503, f"the product could not be stored ({e.strerror or e.__class__.__name__}); "
                                         "nothing was added: try again later") from None
            release.add_product({**record, "image_path": service.added.photo_path(stored)}, vectors)
        metrics.added.inc()
        nearest = release.similar(product_id, "hybrid", 5) if "hybrid" in release.kinds else []
        return {**_product(release.product(product_id)), "version": release.version,
                "sentence": vectors["sentence"], "kinds": [k for k in release.kinds if product_id in
                                                           release.built.indexes[k].row],
                "models": [m for m in release.models if release.models[m].supports(ADD_PRODUCT)],
                "nearest": _hits(release, nearest)}


# ---------------------------------------------------------------- responses

def _hits(release: Release, hits: list[Hit]) -> list[dict]:
    return [{"id": h.id, "score": round(h.score, 6), "title": release.title(h.id)} for h in hits]


def _product(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k != "image_path"}
    out["image_url"] = f"/products/{record['id']}/image" if record["image_path"] else None
    return out


def _unknown_products(ids: list[str]) -> HTTPException:
    return HTTPException(404, f"unknown product id{'s' if len(ids) > 1 else ''} {listed(ids)}")


def _check_kind(release: Release, kind: str) -> None:
    if kind not in release.kinds:
        raise HTTPException(422, f"kind '{echo(kind)}' is not built in version {release.version}; one of "
                                 f"{', '.join(release.kinds)}")


def _model(release: Release, name: str | None) -> str:
    if not release.models:  # e.g. a catalogue without purchases: nothing was fitted, nothing will be until rebuilt
        raise HTTPException(503, f"no recommendations in version {release.version}: {release.models_note}; similar "
                                 "products and search work")
    name = name or next(iter(release.models), None)
    if name not in release.models:
        raise HTTPException(422, f"model '{echo(name)}' is not served; served: "
                                 f"{', '.join(release.models) or 'none'}")
    return name
