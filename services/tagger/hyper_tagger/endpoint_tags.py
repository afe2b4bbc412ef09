"""Descriptive tags from an OpenAI-compatible endpoint (`HYPER_TAGGING_BACKEND=openai`): the
judge's endpoint (`HYPER_JUDGE_URL`, `HYPER_JUDGE_MODEL`), a `vllm serve` in the cluster or a
hosted API, asked as the in-process vLLM backend asks (hyper_tagger.llm): one request per prompt
with the same instructions, the reply held to the tag schema by vLLM's structured outputs, or,
with `HYPER_JUDGE_CONSTRAINED=false`, by the standard `response_format` JSON schema that hosted
APIs take. A vLLM server must be started without free whitespace in structured replies
(`--structured-outputs-config '{"backend": "guidance", "disable_any_whitespace": true}'`, as the
chart starts the judge): the request's own setting was not honoured by vLLM 0.32, and a small
model padded between keys until the reply was cut off. Rate limits and server errors are retried
as the judge's requests are; a reply that still does not parse leaves its prompt untagged and is
counted."""

from __future__ import annotations

import asyncio

import numpy as np

from hyper.judges.openai_endpoint import EndpointConfig, completion
from hyper.judges.pairwise import JudgeUsage, version_of
from hyper_tagger.descriptive import request_text
from hyper_tagger.llm import TAGGING_INSTRUCTIONS, replies_to_bits, tag_schema

TAG_REPLY_TOKENS = 256


class EndpointDescriptiveTagger:
    def __init__(self, config: EndpointConfig):
        self.config = config
        # What decides its tags: the endpoint, the model, the instructions, the schema and how it is held.
        self.name = f"openai:{config.model}:" + version_of({
            "base_url": config.base_url, "model": config.model, "instructions": TAGGING_INSTRUCTIONS,
            "schema": tag_schema(), "constrained": config.constrained})
        self.usage = JudgeUsage()  # what tagging has cost so far

    def _request(self, prompt: str) -> dict:
        request: dict = {"model": self.config.model, "temperature": 0.0, "max_tokens": TAG_REPLY_TOKENS,
                         "messages": [{"role": "system", "content": TAGGING_INSTRUCTIONS},
                                      {"role": "user", "content": f"User request:\n{request_text(prompt)}"}]}
        if self.config.constrained:  # vLLM's structured outputs (whitespace: see the module's docstring)
            request["extra_body"] = {"structured_outputs": {"json": tag_schema(), "disable_any_whitespace": True}}
        else:  # the standard JSON-schema response format of hosted APIs
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "tags", "schema": tag_schema(), "strict": True}}
        return request

    def tag(self, prompts: list[str]) -> np.ndarray:
        return replies_to_bits(asyncio.run(self._replies(prompts)))

    async def _replies(self, prompts: list[str]) -> list[str]:
        import openai

        gate = asyncio.Semaphore(self.config.concurrency)
        async with openai.AsyncOpenAI(base_url=self.config.base_url, api_key=self.config.api_key or "EMPTY",
                                      timeout=self.config.timeout_s, max_retries=0) as client:
            async def ask(row: int, prompt: str) -> str:
                async with gate:
                    response = await completion(client, self.config, self._request(prompt), self.usage,
                                                f"the tags of prompt {row}")
                    return response.choices[0].message.content or ""

            return await asyncio.gather(*(ask(row, prompt) for row, prompt in enumerate(prompts)))
