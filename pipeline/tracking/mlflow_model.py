"""The MLflow model of a candidate, logged as a model from code (this file, not a pickled object).

Its one artifact, ``bundle``, is a :mod:`pipeline.tracking.serving` bundle; the ``pipeline`` package
travels with it in ``code_paths``. ``predict`` takes raw rows (a DataFrame with the training
file's columns, typed as the model's signature says: MLflow refuses a missing column or a value
of the wrong type first) and returns the decided class name in ``prediction`` and one
``p_<class>`` probability column per class. A row the preprocessing cannot read as it was
trained (a level never seen, an empty row) is refused with the same one-line message
``make predict`` gives, as an MLflow error: HTTP 400 from ``mlflow models serve``.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel


class CandidateModel(PythonModel):
    def load_context(self, context):
        from pipeline.tracking.serving import Candidate

        self.candidate = Candidate.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from pipeline.data.columns import DataError

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        try:
            return self.candidate.predict(model_input, strict=True)
        except DataError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


mlflow.models.set_model(CandidateModel())
