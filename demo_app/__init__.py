"""demo_app package (see ../shared DESIGN)."""

__all__: list[str] = []
