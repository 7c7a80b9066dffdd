from .concept_encoder import ConceptEncoder, ConceptEncoderOutput

__all__ = ["ConceptEncoder", "ConceptEncoderOutput"]
