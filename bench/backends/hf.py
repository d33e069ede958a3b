"""The Hugging Face backend: PyTorch classifiers and causal LMs from local folders or the hub."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.backends import (
    Classifier,
    LanguageModel,
    LoadSettings,
    ModelIdentity,
    ModelType,
    register_backend,
)

if TYPE_CHECKING:
    from bench.specs import ModelSpec


@register_backend("hf")
class HFBackend:
    """``AutoModelForSequenceClassification`` and ``AutoModelForCausalLM`` through transformers:
    safetensors only unless the spec trusts pickles, no remote code unless asked."""

    name = "hf"

    def identity(self, spec: ModelSpec) -> ModelIdentity:
        from bench.models.identity import model_identity

        return model_identity(spec.path, spec.revision, backend=self.name)

    def model_type(self, spec: ModelSpec) -> ModelType:
        from bench.models.causal import is_causal_lm

        causal = is_causal_lm(spec.path, spec.revision, spec.trust_remote_code)
        return "language_model" if causal else "classifier"

    def require(self, spec: ModelSpec, model_type: ModelType) -> None:
        """Refuse, before weights are read, a model that is not of ``model_type``."""
        if model_type == "language_model":
            from bench.models.causal import require_causal_lm

            require_causal_lm(spec.path, spec.revision, spec.trust_remote_code)

    def key_settings(self, settings: LoadSettings) -> dict[str, Any]:
        from bench.models.hf_loading import resolve_device, resolve_dtype

        return {"dtype": resolve_dtype(settings.dtype, resolve_device(settings.device))}

    def load_classifier(self, spec: ModelSpec, settings: LoadSettings) -> Classifier:
        from bench.models.classifier import HFClassifier

        return HFClassifier.from_spec(
            spec, settings.device, settings.dtype, settings.max_length or 256
        )

    def load_language_model(self, spec: ModelSpec, settings: LoadSettings) -> LanguageModel:
        from bench.models.causal import CausalLM

        return CausalLM.from_spec(spec, settings.device, settings.dtype, settings.max_length)
