"""Pydantic request models of the loopml REST API (validated before any service call)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_KEY = Field(min_length=1, max_length=250)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRunRequest(_Strict):
    experiment: str = Field(min_length=1, max_length=250)
    name: str | None = Field(default=None, max_length=500)
    parent_id: str | None = Field(default=None, max_length=64)
    params: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    environment: dict[str, Any] | None = None
    run_id: str | None = Field(default=None, min_length=1, max_length=64)


class LogBatchRequest(_Strict):
    """Metrics travel as compact ``[key, value, step, ts]`` rows; NaN/inf as JSON NaN/Infinity."""

    metrics: list[tuple[str, float, int, float]] = Field(default_factory=list, max_length=1_000_000)
    params: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    batch_id: str | None = Field(default=None, min_length=1, max_length=128)


class EndRunRequest(_Strict):
    status: str = "FINISHED"
    error: str | None = None


class SetTagsRequest(_Strict):
    tags: dict[str, str]


class SearchRequest(_Strict):
    filter: str | None = Field(default=None, max_length=10_000)
    experiments: list[str] | None = None
    order_by: list[str] | None = None
    limit: int | None = Field(default=None, ge=0)
    include_deleted: bool = False
    include_environment: bool = True


class UseDatasetRequest(_Strict):
    ref: str = Field(min_length=1, max_length=1000)
