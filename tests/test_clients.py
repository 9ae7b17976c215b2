"""The server with the clients people use, on 127.0.0.1: LangChain's ChatOpenAI and litellm (the
OpenAI SDK is in test_server.py). Each gets an ensemble's answer through its ordinary API."""

import os

import pytest
from pydantic import BaseModel

from manyminds.backends import Scripted
from tests.test_server import served

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm fetches a price list on import otherwise

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def votes(messages, params, index):
    if "JSON" in messages[0].content:
        return '{"answer": 12, "unit": "apples"}' if index % 3 else '{"answer": 13, "unit": "apples"}'
    return f"The answer is {13 if index % 3 == 0 else 12}."


class Count(BaseModel):
    answer: int
    unit: str


def test_langchain_chat_openai_invokes_streams_and_parses_structured_output():
    from langchain_openai import ChatOpenAI

    with served(Scripted(votes)) as url:
        chat = ChatOpenAI(model="self-consistency-6", base_url=url, api_key="unused", max_retries=0,
                          extra_body={"manyminds": {"format": "number"}})
        reply = chat.invoke("What is 7 + 5?")
        assert reply.content == "The answer is 12." and reply.response_metadata["finish_reason"] == "stop"
        assert reply.usage_metadata["output_tokens"] == 6 * 4
        streamed = "".join(chunk.content for chunk in chat.stream("What is 7 + 5?"))
        assert streamed == "The answer is 12."
        structured = ChatOpenAI(model="self-consistency-6", base_url=url, api_key="unused", max_retries=0)
        assert structured.with_structured_output(Count, method="json_schema").invoke("Count the apples.") == Count(
            answer=12, unit="apples")


def test_litellm_completion_reaches_the_ensemble():
    import litellm

    with served(Scripted(votes)) as url:
        reply = litellm.completion(model="openai/self-consistency-6", api_base=url, api_key="unused",
                                   messages=[{"role": "user", "content": "What is 7 + 5?"}],
                                   extra_body={"manyminds": {"format": "number"}}, temperature=0.7)
        assert reply.choices[0].message.content == "The answer is 12."
        assert reply.usage.completion_tokens == 6 * 4
