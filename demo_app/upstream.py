"""The upstream catalog service: titles, artwork metadata and recommendations.

A separate process (``python -m demo_app.upstream --port 8002``) that the demo app
reaches over real HTTP, so that stopping it, or putting the chaos proxy in front of
it, produces real network errors. Deterministic data; no state.

Routes: ``GET /healthz``, ``GET /titles``, ``GET /titles/<id>`` (details with
artwork metadata and recommendations), ``GET /titles/<id>/artwork``,
``GET /titles/<id>/recommendations``.
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, Response, jsonify

from .media import MEDIA_TYPE, duration_for
from .serve import run_waitress

_NAMES = (
    ("Night Train to Lisbon", "A signal lost between two stations, and the people waiting for it."),
    ("The Last Lighthouse", "A keeper counts the ships that never arrive."),
    ("Parallel Lines", "Two engineers, one outage, and the postmortem nobody wanted."),
    ("Harbour of Glass", "A city rebuilt every night from what the tide brings back."),
    ("Slow Motion Storm", "Weather forecasters in a town where tomorrow runs late."),
    ("Signal and Noise", "A radio astronomer hears a pattern in the static."),
)
_GENRES = ("drama", "mystery", "documentary", "comedy", "sci-fi", "thriller")
_PALETTE = ("#1f6feb", "#8957e5", "#d29922", "#2da44e", "#cf222e", "#0a7b83", "#bf3989")


def title(title_id: int) -> dict[str, Any]:
    """Summary of one title (what the catalog lists)."""
    name, _ = _NAMES[(title_id - 1) % len(_NAMES)]
    if title_id > len(_NAMES):
        name = f"{name} {title_id // len(_NAMES) + 1}"
    return {
        "id": title_id,
        "name": name,
        "year": 1990 + (title_id * 7) % 35,
        "genre": _GENRES[title_id % len(_GENRES)],
        "duration_s": duration_for(title_id),
        "media_type": MEDIA_TYPE,
    }


def artwork(title_id: int) -> dict[str, Any]:
    """Artwork metadata: colours and shape for the poster the page draws."""
    return {
        "background": _PALETTE[title_id % len(_PALETTE)],
        "accent": _PALETTE[(title_id + 3) % len(_PALETTE)],
        "aspect_ratio": "2:3",
        "alt": f"Poster of {title(title_id)['name']}",
    }


def recommendations(title_id: int, count: int) -> list[int]:
    """Other titles to watch next (never the title itself)."""
    return [t for t in range(1, count + 1) if t != title_id][:3]


def details(title_id: int, count: int) -> dict[str, Any]:
    _, synopsis = _NAMES[(title_id - 1) % len(_NAMES)]
    return {**title(title_id), "synopsis": synopsis, "artwork": artwork(title_id),
            "recommendations": recommendations(title_id, count)}


def create_upstream(titles: int = 3) -> Flask:
    """The catalog service's WSGI app for titles ``1..titles``."""
    app = Flask("demo_app.upstream")

    def known(title_id: int) -> Response | None:
        if 1 <= title_id <= titles:
            return None
        response = jsonify(error="unknown title", id=title_id)
        response.status_code = 404
        return response

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/titles")
    def list_titles() -> dict[str, Any]:
        return {"titles": [{**title(t), "artwork": artwork(t)} for t in range(1, titles + 1)]}

    @app.get("/titles/<int:title_id>")
    def get_title(title_id: int) -> Any:
        return known(title_id) or details(title_id, titles)

    @app.get("/titles/<int:title_id>/artwork")
    def get_artwork(title_id: int) -> Any:
        return known(title_id) or artwork(title_id)

    @app.get("/titles/<int:title_id>/recommendations")
    def get_recommendations(title_id: int) -> Any:
        return known(title_id) or {"ids": recommendations(title_id, titles)}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the catalog on 127.0.0.1 with waitress; ``--port 0`` picks a free port."""
    parser = argparse.ArgumentParser(prog="python -m demo_app.upstream",
                                     description="The upstream catalog service of the demo.")
    parser.add_argument("--port", type=int, default=8002, help="0 picks a free port")
    parser.add_argument("--titles", type=int, default=3, help="serve titles 1..N")
    args = parser.parse_args(argv)
    run_waitress(create_upstream(args.titles), args.port, "upstream")


if __name__ == "__main__":
    main()
