"""Can this map be trusted? Perturbation tests of saliency maps for DETR and its family: deletion and
insertion curves tracked by D-RISE similarity, the pointing game, a D-RISE reference map, and every
explanation of one detection compared (see perturb.py, methods.py)."""
from .detector import Detector, PreparedImage, Proposals
from .drise import drise_map, random_masks
from .methods import MethodComparison, compare_explanations, explanation_maps
from .perturb import FaithfulnessResult, Probe, faithfulness, make_baseline
from .pointing import PointingResult, pointing_game
from .similarity import Target, drise_similarity, pairwise_similarity

__all__ = ["Detector", "PreparedImage", "Proposals", "drise_map", "random_masks", "MethodComparison",
           "compare_explanations", "explanation_maps", "FaithfulnessResult", "Probe", "faithfulness",
           "make_baseline", "PointingResult", "pointing_game", "Target", "drise_similarity", "pairwise_similarity"]
