from .concept_encoder import ConceptEncoder, ConceptEncoderOutput
from .concept_prior import ConceptPrior

__all__ = ["ConceptEncoder", "ConceptEncoderOutput", "ConceptPrior"]
