"""fruit-serve: the trained classifier behind an HTTP API, with a web page for a phone.

It loads the classifier export that `kedro run --pipelines train` wrote and the feature model
it was trained with (ONNX Runtime, from the model cache) once, then answers one photo at a time:
`POST /predict`, `GET /health`, `GET /` (the page) and the OpenAPI documentation at `/docs`.
"""

import argparse
import json
import logging
import os
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fruit_pipeline import __version__
from fruit_pipeline.config import config_loader
from fruit_pipeline.contracts import COLOUR, INT8_ENGINE
from fruit_pipeline.core import colour, feature_model
from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.core.images import ImageRejected, decode_image
from fruit_pipeline.core.predictors import Predictor, onnx_predictor

logger = logging.getLogger(__name__)

# Worker processes of uvicorn rebuild the service from these options.
OPTIONS_VARIABLE = "FRUIT_SERVE_OPTIONS"


class Candidate(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    label: str | None  # None: not sure enough (top probability under the threshold)
    probability: float
    top: list[Candidate]
    fact: str | None  # a short text about the fruit, when the facts file has one
    model: dict[str, Any]


class Health(BaseModel):
    ready: bool
    model: dict[str, Any]


@dataclass(frozen=True)
class ServiceOptions:
    """Where the model comes from and the limits on what a request may send."""

    export: str
    weights: str | None
    model_cache: str
    max_image_pixels: int
    max_upload_bytes: int
    top: int
    threads: int


@dataclass(frozen=True)
class Service:
    """The loaded models and facts: everything a request needs."""

    classifier: ExportedClassifier
    predict_features: Predictor
    facts: dict[str, str]
    options: ServiceOptions

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "feature_model": self.classifier.feature_model,
            "labels": len(self.classifier.labels),
            "unknown_threshold": self.classifier.unknown_threshold,
            "metrics": self.classifier.metrics,
            "version": __version__,
        }

    def fact(self, label: str | None) -> str | None:
        """The facts file's text for a label, else for its first word (`Apple Red 1`: `apple`)."""
        if label is None:
            return None
        return self.facts.get(label) or self.facts.get(label.split()[0].lower())


def load_service(options: ServiceOptions, facts: dict[str, str]) -> Service:
    """Load the export and the feature model it was trained with; refuse any other."""
    classifier = ExportedClassifier.load(options.export)
    expected = classifier.feature_model
    if expected["weights_sha256"] is None:
        raise SystemExit(
            "The classifier was trained on features of random weights (featurize.weights: null): "
            "train it on real weights before serving it."
        )
    weights = options.weights if options.weights is not None else expected["weights"]
    if weights is None:
        raise SystemExit(
            "The export names its weights by checksum only (sha256 "
            f"{expected['weights_sha256'][:12]}...; its features came from an earlier version of "
            "the features table): give the weights file with --weights."
        )
    engine, cache = expected["engine"], options.model_cache
    try:
        # An INT8 classifier learnt from the quantized model's features: that model, cached.
        found = feature_model.identity(weights, engine, classifier.framing, cache)
        if found["weights_sha256"] != expected["weights_sha256"]:
            raise SystemExit(
                f"The weights {weights!r} (sha256 {found['weights_sha256'][:12]}..., engine "
                f"{engine}) are not those the classifier was trained with (sha256 "
                f"{expected['weights_sha256'][:12]}...)."
            )
        model = (
            feature_model.int8_feature_model(weights, cache, None)
            if engine == INT8_ENGINE
            else feature_model.onnx_feature_model(weights, cache)
        )
    except RuntimeError as error:
        raise SystemExit(str(error)) from None
    if COLOUR in classifier.descriptors:
        colour.prepare()
    return Service(
        classifier=classifier,
        predict_features=onnx_predictor(model, options.threads),
        facts=facts,
        options=options,
    )


class UploadLimit:
    """A JSON 413 as soon as a request body passes the limit, before anything parses it.

    FastAPI's own `max_body_size` answers in plain text; the app's clients read JSON errors.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"error": self.reason}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # Handled by the app's HTTPException handler: a JSON 413.
                raise HTTPException(413, self.reason)
            return message

        await self.app(scope, counted_receive, send)

    @property
    def reason(self) -> str:
        return f"upload larger than {self.max_bytes} bytes (fruit-serve --max-upload-mb)"


def create_app(service: Service) -> FastAPI:
    """The HTTP API and the page around a loaded service."""
    app = FastAPI(
        title="fruit_pipeline",
        version=__version__,
        description="Names the fruit in a photo: MobileNetV2 features and the trained classifier.",
    )
    app.add_middleware(UploadLimit, max_bytes=service.options.max_upload_bytes)
    page = files("fruit_pipeline.apps.serve.web").joinpath("index.html").read_text(encoding="utf-8")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        missing = [e for e in error.errors() if e.get("loc", ())[-1:] == ("file",)]
        reason = (
            "send the photo as the multipart form field 'file'"
            if missing
            else "invalid request: " + "; ".join(str(e.get("msg")) for e in error.errors())
        )
        return JSONResponse({"error": reason}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> Health:
        """Ready once the models are loaded; the model's identity."""
        return Health(ready=True, model=service.identity)

    @app.post("/predict", responses={413: {}, 422: {}})
    def predict(file: Annotated[UploadFile, File()]) -> Prediction:
        """Name the fruit in one photo (multipart field `file`); `label` is null when unsure."""
        limit = service.options.max_image_pixels
        try:
            pixels = decode_image(
                file.file.read(), feature_model.INPUT_SIZE, limit, service.classifier.framing
            )
        except ImageRejected as rejection:
            raise HTTPException(422, str(rejection)) from None
        embedding = service.predict_features(pixels[np.newaxis].astype(np.float32))[0]
        descriptors = service.classifier.descriptor_vector(embedding, pixels)
        answer = service.classifier.answer(descriptors, service.options.top)
        return Prediction(
            label=answer.label,
            probability=answer.probability,
            top=[Candidate(label=label, probability=p) for label, p in answer.top],
            fact=service.fact(answer.label),
            model=service.identity,
        )

    return app


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker, from the options the command line put in the environment."""
    settings = json.loads(os.environ[OPTIONS_VARIABLE])
    return create_app(load_service(ServiceOptions(**settings["options"]), settings["facts"]))


def project_options(args: argparse.Namespace) -> tuple[ServiceOptions, dict[str, str]]:
    """Options from the command line, defaults from the project's configuration."""
    loader = config_loader(args.project, env=args.env)
    catalog, featurize = loader["catalog"], loader["parameters"]["featurize"]
    export = args.export or catalog["classifier_export"]["filepath"]
    options = ServiceOptions(
        export=_from_project(args.project, export),
        weights=args.weights,
        model_cache=_from_project(args.project, featurize["model_cache"]),
        max_image_pixels=featurize["max_image_pixels"],
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        top=args.top,
        threads=args.threads,
    )
    facts = {str(label): str(text) for label, text in loader["facts"].items()}
    return options, facts


def _from_project(project: Path, location: str) -> str:
    # Relative paths of the configuration are relative to the project folder, URLs stay.
    return location if "://" in location or os.path.isabs(location) else str(project / location)


def main(argv: list[str] | None = None) -> int:
    import uvicorn  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="fruit-serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--export", help="path or URL of classifier_export.json (default: catalog)")
    parser.add_argument("--weights", help="the feature model's weights (default: the export's)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the Kedro project")
    parser.add_argument("--env", help="configuration environment (default: local)")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads a request")
    parser.add_argument("--top", type=int, default=3, help="candidates in each answer")
    parser.add_argument("--max-upload-mb", type=float, default=10.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options, facts = project_options(args)
    if not Path(options.export).exists() and "://" not in options.export:
        parser.error(
            f"no classifier export at {options.export}: run `kedro run --pipelines train` first "
            "or give --export"
        )
    if args.workers == 1:
        uvicorn.run(create_app(load_service(options, facts)), host=args.host, port=args.port)
        return 0
    # Each worker process loads the models itself, from the options put in its environment.
    os.environ[OPTIONS_VARIABLE] = json.dumps({"options": asdict(options), "facts": facts})
    uvicorn.run(
        "fruit_pipeline.apps.serve.app:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
    )
    return 0
