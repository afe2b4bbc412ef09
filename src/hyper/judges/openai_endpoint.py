"""A pairwise judge behind any OpenAI-compatible chat-completions endpoint: a `vllm serve` in
the cluster, or a hosted API.

Each pair is asked twice, with the responses in both orders. The label is the verdict both
orders give, "tie" when they disagree (position bias), the one parsed verdict when the other
reply did not parse, and none when neither did. Its confidence is the probability the judge
gave that verdict, averaged over the orders (from the first token's log-probabilities when the
server returns them; else 1 for a matching verdict and 0 for another).

Replies are constrained to the three choices where the server supports it (vLLM's
`structured_outputs`), and parsed leniently where it does not ("[[A]]", "Response B is
better", "Output (a)", a JSON verdict, ...). Rate limits (429), server errors (5xx), timeouts
and lost connections are retried with exponential backoff and jitter (honouring Retry-After);
other errors (a wrong model name, a refused key) fail at once. Retries are done here rather
than by the `openai` client so that they are counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter

from hyper.core.errors import PeerUnavailable
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

log = logging.getLogger(__name__)

JUDGE_REQUESTS = Counter("hyper_tagger_judge_requests_total", "Requests to the OpenAI-compatible judge.",
                         ["outcome"])
JUDGE_TOKENS = Counter("hyper_tagger_judge_tokens_total", "Tokens through the OpenAI-compatible judge.", ["kind"])
JUDGE_COST = Counter("hyper_tagger_judge_cost_total", "Money spent on the judge, at the configured prices.")

CHOICES = ("A", "B", "tie")
RETRYABLE_STATUS = {408, 409, 429} | set(range(500, 600))


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str  # e.g. http://judge:8000/v1
    model: str
    api_key: str = "EMPTY"
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 6
    backoff_s: float = 0.5  # first retry's wait; doubles each time, with jitter
    constrained: bool = True  # vLLM's structured_outputs choice; off for servers without it
    logprobs: bool = True
    max_tokens: int = 16
    system_prompt: str = JUDGE_INSTRUCTIONS
    template: str = JUDGE_TEMPLATE  # {prompt}, {response_a}, {response_b}
    price_prompt_per_million: float = 0.0
    price_completion_per_million: float = 0.0

    @staticmethod
    def read_template(path: str) -> tuple[str, str]:
        """A prompt file: the system prompt, a line '---', then the user template."""
        system, sep, template = Path(path).read_text().partition("\n---\n")
        if not sep or not all(f"{{{name}}}" in template for name in ("prompt", "response_a", "response_b")):
            raise ValueError(f"{path}: expected a system prompt, a line '---', then a template with {{prompt}}, "
                             "{response_a} and {response_b}")
        return system.strip(), template.strip()


# ---------------------------------------------------------------------------- parsing

_VERDICT_PATTERNS = [
    (re.compile(r"\[\[\s*([ABC])\s*\]\]"), {"A": "A", "B": "B", "C": "tie"}),  # MT-Bench style
    (re.compile(r"\b(?:response|output|answer|assistant)\s*\(?([ab12])\)?\s+(?:is|was)\s+(?:better|preferred)",
                re.IGNORECASE), {"a": "A", "b": "B", "1": "A", "2": "B"}),
    (re.compile(r"\b(?:verdict|winner|choice|answer|preference)\s*[:=]\s*\**\s*\(?(A|B|tie)\b", re.IGNORECASE),
     {"a": "A", "b": "B", "tie": "tie"}),
    (re.compile(r"^\s*(?:output|response)\s*\(?([ab])\)?\s*$", re.IGNORECASE), {"a": "A", "b": "B"}),
]
_TIE = re.compile(r"\b(?:tie|equally (?:good|bad|helpful)|both (?:are )?equal|neither is better)\b", re.IGNORECASE)


def parse_verdict(reply: str) -> str | None:
    """"A", "B" or "tie" from a judge's reply, or None when it does not say one clearly."""
    text = reply.strip()
    bare = text.strip(" \t\n*\"'`.()[]:").lower()
    if bare in ("a", "b", "tie"):
        return {"a": "A", "b": "B", "tie": "tie"}[bare]
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            for key in ("verdict", "winner", "preference", "label", "answer"):
                if isinstance(data.get(key), str):
                    return parse_verdict(data[key])
    except ValueError:
        pass
    for pattern, mapping in _VERDICT_PATTERNS:
        found = {mapping[m.lower() if m.lower() in mapping else m] for m in pattern.findall(text)}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            return None  # it names both: no clear verdict
    return "tie" if _TIE.search(text) else None


def _token_verdict(token: str) -> str | None:
    bare = token.strip(" \t\n*\"'`.()[]").lower()
    return {"a": "A", "b": "B", "tie": "tie", "t": "tie", "ti": "tie"}.get(bare)


def verdict_probabilities(choice, verdict: str | None) -> dict[str, float]:
    """P(each verdict) from the first generated token's top log-probabilities; without them,
    certainty in the parsed verdict."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content:
        probabilities: dict[str, float] = {}
        for candidate in content[0].top_logprobs or []:
            name = _token_verdict(candidate.token)
            if name:
                probabilities[name] = probabilities.get(name, 0.0) + math.exp(candidate.logprob)
        if probabilities:
            return probabilities
    return {verdict: 1.0} if verdict else {}


def combine(verdicts: list[str | None], probabilities: list[dict[str, float]]) -> Judgement:
    """Both orders' verdicts (in the pair's own order) into one judgement."""
    parsed = [v for v in verdicts if v]
    if not parsed:
        return Judgement("", 0.0, 0.0)
    label = parsed[0] if len(set(parsed)) == 1 else "tie"
    asked = [p for v, p in zip(verdicts, probabilities, strict=True) if v]
    confidence = sum(min(p.get(label, 0.0), 1.0) for p in asked) / len(asked)
    return Judgement(label, confidence, sum(v == label for v in parsed) / len(verdicts))


# ---------------------------------------------------------------------------- requests


class JudgeRequestFailed(PeerUnavailable):
    pass


class OpenAICompatibleJudge:
    def __init__(self, config: EndpointConfig):
        self.config = config
        self.name = f"openai:{config.model}"

    def version(self) -> str:
        """What decides its answers: the endpoint, the model, the prompt and how it is asked."""
        return version_of({name: getattr(self.config, name) for name in (
            "base_url", "model", "constrained", "logprobs", "max_tokens", "system_prompt", "template")})

    def annotate(self, instances: list[Instance]) -> Annotation:
        return asyncio.run(self._annotate(instances))

    async def _annotate(self, instances: list[Instance]) -> Annotation:
        import openai

        usage = JudgeUsage()
        gate = asyncio.Semaphore(self.config.concurrency)
        async with openai.AsyncOpenAI(base_url=self.config.base_url, api_key=self.config.api_key or "EMPTY",
                                      timeout=self.config.timeout_s, max_retries=0) as client:
            async def ask(instance: Instance, swapped: bool):
                async with gate:
                    return await self._ask(client, instance, swapped, usage)

            replies = await asyncio.gather(*(ask(i, s) for i in instances for s in (False, True)))
        judgements = []
        for k in range(len(instances)):
            (first, p_first), (second, p_second) = replies[2 * k], replies[2 * k + 1]
            p_second = {unswap(name) or name: p for name, p in p_second.items()}
            judgements.append(combine([first, unswap(second)], [p_first, p_second]))
        usage.unparsed = sum(verdict is None for verdict, _ in replies)
        return Annotation(judgements, usage)

    def _request(self, instance: Instance, swapped: bool) -> dict:
        config = self.config
        request: dict = {"model": config.model, "temperature": 0.0, "max_tokens": config.max_tokens,
                         "messages": [{"role": "system", "content": config.system_prompt},
                                      {"role": "user", "content": judge_message(instance, swapped, config.template)}]}
        if config.logprobs:
            request.update(logprobs=True, top_logprobs=5)
        if config.constrained:
            request["extra_body"] = {"structured_outputs": {"choice": list(CHOICES)}}
        return request

    async def _ask(self, client, instance: Instance, swapped: bool, usage: JudgeUsage):
        """One order of one pair: (verdict or None, probabilities of the verdicts)."""
        response = await completion(client, self.config, self._request(instance, swapped), usage,
                                    f"pair {instance.id!r}")
        choice = response.choices[0]
        verdict = parse_verdict(choice.message.content or "")
        return verdict, verdict_probabilities(choice, verdict)


async def completion(client, config: EndpointConfig, request: dict, usage: JudgeUsage, what: str):
    """One chat completion, retried with backoff where the failure may pass (`what` names the
    item in the error when it does not); its tokens and cost counted in `usage`."""
    import openai

    for attempt in range(config.max_retries + 1):
        usage.requests += 1
        try:
            response = await client.chat.completions.create(**request)
        except (openai.APIStatusError, openai.APIConnectionError) as error:  # timeouts included
            status = getattr(error, "status_code", None)
            retryable = status is None or status in RETRYABLE_STATUS
            JUDGE_REQUESTS.labels("retried" if retryable else "failed").inc()
            if not retryable or attempt == config.max_retries:
                raise JudgeRequestFailed(f"the endpoint at {config.base_url} failed on {what} after {attempt + 1} "
                                         f"request(s): {error}") from error
            usage.retries += 1
            await asyncio.sleep(_backoff(config, attempt, error))
            continue
        JUDGE_REQUESTS.labels("ok").inc()
        _account(config, response, usage)
        return response
    raise AssertionError("unreachable")


def _backoff(config: EndpointConfig, attempt: int, error: Exception) -> float:
    response = getattr(error, "response", None)
    retry_after = response.headers.get("retry-after") if response is not None else None
    if retry_after and retry_after.replace(".", "", 1).isdigit():
        return min(float(retry_after), 60.0)
    return config.backoff_s * (2 ** attempt) * (0.5 + random.random())  # noqa: S311 - jitter


def _account(config: EndpointConfig, response, usage: JudgeUsage) -> None:
    if response.usage is None:
        return
    prompt, completion = response.usage.prompt_tokens, response.usage.completion_tokens
    cost = (prompt * config.price_prompt_per_million + completion * config.price_completion_per_million) / 1e6
    usage.prompt_tokens += prompt
    usage.completion_tokens += completion
    usage.cost += cost
    JUDGE_TOKENS.labels("prompt").inc(prompt)
    JUDGE_TOKENS.labels("completion").inc(completion)
    JUDGE_COST.inc(cost)
