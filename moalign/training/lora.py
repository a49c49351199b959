"""LoRA (peft) adapters, as every method's recipe spells them: `lora: {r: 8, alpha: 16}`."""
from __future__ import annotations

from pydantic import Field

from moalign.config import Strict


class Lora(Strict):
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="adapter scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input, in [0, 1); "
                          "RL (GRPO, RLOO) trains without dropout and refuses it")
    target_modules: list[str] | str = Field("all-linear", description="names of the modules that get "
                                            "adapters, or `all-linear` for every linear layer")

    def peft(self):
        from peft import LoraConfig
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM")
