"""guideopt: plan LLM deployments with a calibrated roofline cost model and CP-SAT."""

from guideopt.api import plan, predict, predict_rows
from guideopt.errors import CatalogError, GuideoptError, InvalidRequestError, NoFeasiblePlanError

__all__ = ["CatalogError", "GuideoptError", "InvalidRequestError", "NoFeasiblePlanError", "plan", "predict", "predict_rows"]
