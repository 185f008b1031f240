"""A portable export of a trained model: loads without TFF and without Keras 2."""

from tff_gpt.export.exporter import EXPORT_DIR, export_model, export_run

__all__ = ["EXPORT_DIR", "export_model", "export_run"]
