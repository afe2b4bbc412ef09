"""The tagging LM served by vLLM: descriptive tags and pairwise AI judgements.

One request per instance covers all eight dimensions (the paper sent one prompt per
(instance, dimension)): the long instructions come first and are the same for every
instance, so vLLM's prefix cache serves them once; the instance text comes last. Replies are
constrained by structured output (a JSON schema whose enums are the catalogue's value sets),
so every reply parses and every value is in its set; a reply that still does not parse (cut
off at max_tokens) becomes "no tag" for that instance and is counted.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
from prometheus_client import Counter

from hyper.core.catalogue import DESCRIPTIVE_VALUES, OPEN_SET_DIMENSIONS, PRESENT
from hyper.core.schema import Instance
from hyper.judges.pairwise import (
    JUDGE_INSTRUCTIONS,
    JUDGE_TEMPLATE,
    Annotation,
    Judgement,
    JudgeUsage,
    judge_message,
    unswap,
    version_of,
)
from hyper_tagger.descriptive import DESCRIPTIVE_FEATURES, MAX_SUBJECTS, request_text, set_values

log = logging.getLogger(__name__)

UNPARSED_REPLIES = Counter("hyper_tagger_llm_unparsed_replies_total",
                           "Tagging-LM replies that did not parse (instance left untagged).")
LLM_TOKENS = Counter("hyper_tagger_llm_tokens_total", "Tokens through the tagging LM.", ["kind"])

SCALAR = ("expertise_level", "open_endedness", "safety_concern", "complexity_of_intents")
TAGGING_INSTRUCTIONS = (
    "You analyse what a user asks an AI assistant. Read the user's request at the end and "
    "describe it with a JSON object with these keys:\n"
    "- subject_of_expertise: 1 to 3 fields of knowledge the request needs, from the allowed list "
    "(use \"Others\" when none fits);\n"
    "- expertise_level: who could answer well: general public, basic domain knowledge or expert "
    "domain knowledge;\n"
    "- languages: the natural languages of the request;\n"
    "- open_endedness: how many good answers exist: no (one), low, moderate or high;\n"
    "- safety_concern: how harmful helping could be: safe, low, moderate or high;\n"
    "- complexity_of_intents: simple, moderate or complex;\n"
    "- type_of_in_context_material: kinds of material included in the request for the assistant "
    "to use (code, table, document, url, ...), empty if none;\n"
    "- format_constraints: constraints on the answer's form (length, style, format), empty if none.\n"
    "Answer with the JSON object only."
)


def tag_schema() -> dict:
    """The JSON schema every tagging reply must follow: enums are the catalogue's values."""
    strings = {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 5}
    properties: dict[str, object] = {dim: {"enum": list(DESCRIPTIVE_VALUES[dim])} for dim in SCALAR}
    properties["subject_of_expertise"] = {
        "type": "array", "items": {"enum": list(DESCRIPTIVE_VALUES["subject_of_expertise"])},
        "minItems": 1, "maxItems": MAX_SUBJECTS}
    properties["languages"] = strings
    properties.update({dim: strings for dim in OPEN_SET_DIMENSIONS})
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def tags_to_bits(reply: dict, bits: np.ndarray, row: int) -> None:
    for dim in SCALAR:
        set_values(bits, row, dim, [reply[dim]])
    set_values(bits, row, "subject_of_expertise", list(dict.fromkeys(reply["subject_of_expertise"])))
    if any(language.strip().lower() == "english" for language in reply["languages"]):
        set_values(bits, row, "languages", ["English"])
    for dim in OPEN_SET_DIMENSIONS:
        if any(item.strip() for item in reply[dim]):
            set_values(bits, row, dim, [PRESENT])


def replies_to_bits(replies: list[str]) -> np.ndarray:
    """The descriptive bits of each tagging reply; a reply that does not parse leaves its row
    untagged, counted and logged."""
    bits = np.zeros((len(replies), len(DESCRIPTIVE_FEATURES)), dtype=np.uint8)
    for row, reply in enumerate(replies):
        try:
            tags_to_bits(json.loads(reply), bits, row)
        except (ValueError, KeyError, TypeError) as error:
            UNPARSED_REPLIES.inc()
            bits[row] = 0
            log.warning("tagging reply did not parse; instance left untagged", extra={"row": row, "error": str(error)})
    return bits


class VLLMEngine:
    """One vLLM engine per process, shared by the tagger and the judge."""

    def __init__(self, model: str, max_model_len: int = 8192, **engine_args):
        from vllm import LLM

        self.model = model
        self.llm = LLM(model=model, max_model_len=max_model_len, enable_prefix_caching=True,
                       structured_outputs_config={"backend": "guidance",
                                                  "disable_any_whitespace": True},
                       **engine_args)
        self.tokenizer = self.llm.get_tokenizer()
        self._lock = threading.Lock()  # the offline engine is not re-entrant

    def chat_prompt(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: list[str], sampling) -> list:
        with self._lock:
            outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        LLM_TOKENS.labels("prompt").inc(sum(len(o.prompt_token_ids) for o in outputs))
        LLM_TOKENS.labels("generated").inc(sum(len(o.outputs[0].token_ids) for o in outputs))
        return outputs


class VLLMDescriptiveTagger:
    def __init__(self, engine: VLLMEngine, max_tokens: int = 256):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        self.engine = engine
        self.name = f"vllm:{engine.model}"
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens,
                                       structured_outputs=StructuredOutputsParams(json=tag_schema()))

    def prompts(self, prompts: list[str]) -> list[str]:
        return [self.engine.chat_prompt(TAGGING_INSTRUCTIONS, f"User request:\n{request_text(p)}") for p in prompts]

    def tag(self, prompts: list[str]) -> np.ndarray:
        outputs = self.engine.generate(self.prompts(prompts), self.sampling)
        return replies_to_bits([output.outputs[0].text for output in outputs])


class VLLMJudge:
    """A pairwise judge: asked twice, with A and B in both orders; the label is the verdict
    both orders give (a tie when they disagree), its confidence the mean probability the
    model gave that verdict, its consistency the share of orders that gave it."""

    name = "vllm-pairwise"
    CHOICES = ("A", "B", "tie")

    def __init__(self, engine: VLLMEngine):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        self.engine = engine
        self.sampling = SamplingParams(temperature=0.0, max_tokens=4, logprobs=5,
                                       structured_outputs=StructuredOutputsParams(choice=list(self.CHOICES)))

    def version(self) -> str:
        return version_of({"model": self.engine.model, "instructions": JUDGE_INSTRUCTIONS,
                           "template": JUDGE_TEMPLATE, "choices": self.CHOICES})

    def _prompt(self, instance: Instance, swapped: bool) -> str:
        return self.engine.chat_prompt(JUDGE_INSTRUCTIONS, judge_message(instance, swapped))

    @staticmethod
    def _verdict(output, swapped: bool) -> tuple[str, float]:
        completion = output.outputs[0]
        text = completion.text.strip()
        probability = float(np.exp(completion.cumulative_logprob or 0.0))
        return (unswap(text) if swapped else text) or "", probability

    def annotate(self, instances: list[Instance]) -> Annotation:
        prompts = [self._prompt(i, swapped) for i in instances for swapped in (False, True)]
        outputs = self.engine.generate(prompts, self.sampling)
        usage = JudgeUsage(requests=len(prompts), prompt_tokens=sum(len(o.prompt_token_ids) for o in outputs),
                           completion_tokens=sum(len(o.outputs[0].token_ids) for o in outputs))
        judgements = []
        for k in range(len(instances)):
            verdicts = [self._verdict(outputs[2 * k + s], bool(s)) for s in (0, 1)]
            labels = [label for label, _ in verdicts]
            label = labels[0] if labels[0] == labels[1] else "tie"
            agreeing = [p for verdict, p in verdicts if verdict == label]
            confidence = float(np.mean(agreeing)) if agreeing else 0.5
            judgements.append(Judgement(label, max(confidence, 0.5), len(agreeing) / 2))
        return Annotation(judgements, usage)
