"""The MLflow model of a candidate, logged as a model from code (this file, not a pickled object).

Its one artifact, ``bundle``, is a :mod:`pipeline.serving` bundle; the ``pipeline`` package
travels with it in ``code_paths``. ``predict`` takes raw rows (a DataFrame with the training
file's columns, as text or typed) and returns the decided class name in ``prediction`` and one
``p_<class>`` probability column per class. Each column is coerced and checked by the saved
preprocessing, so MLflow's signature declares the raw columns loosely.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class CandidateModel(PythonModel):
    def load_context(self, context):
        from pipeline.serving import Candidate

        self.candidate = Candidate.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.candidate.predict(model_input)


mlflow.models.set_model(CandidateModel())
