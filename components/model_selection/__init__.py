"""Model selection: k-fold cross-validation of the model families on the train split."""

from components.model_selection.artifact import CrossValidationResult
from components.model_selection.component import ModelSelection

__all__ = ["CrossValidationResult", "ModelSelection"]
