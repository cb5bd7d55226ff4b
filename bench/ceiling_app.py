"""The ceiling: a bare FastAPI app that parses the six insurance fields with pydantic and
returns a constant. No model, no validation messages, no metrics, no log: what the HTTP
stack alone costs. Kept here only for `make bench`."""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

app = FastAPI()


class Patient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    age: int
    sex: Literal["female", "male"]
    bmi: float
    children: int
    smoker: Literal["no", "yes"]
    region: Literal["northeast", "northwest", "southeast", "southwest"]


@app.post("/predict_api")
async def predict_api(patient: Patient) -> float:
    return 12345.67
