"""OpenAI and vLLM request fields that constrain the output (pydantic, the user boundary)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field("response", description="The schema's name (informational).")
    description: str | None = Field(None, description="What the schema is for (informational).")
    json_schema: dict[str, Any] = Field(alias="schema", description="The JSON schema.")
    strict: bool | None = Field(None, description="Accepted; outputs always follow the schema.")


class ResponseFormat(BaseModel):
    """OpenAI's response_format."""

    type: Literal["text", "json_object", "json_schema"] = Field(
        description="text: free; json_object: any JSON object; json_schema: follow the schema."
    )
    json_schema: JsonSchemaFormat | None = Field(None, description="With type json_schema.")


class StructuredOutputsParams(BaseModel):
    """vLLM's structured_outputs: exactly one of the constraint fields."""

    json_: dict[str, Any] | str | None = Field(None, alias="json", description="A JSON schema.")
    regex: str | None = Field(None, description="A regular expression the output matches.")
    choice: list[str] | None = Field(None, description="The output is one of these strings.")
    grammar: str | None = Field(None, description="An EBNF grammar (start rule `root`).")
    json_object: bool | None = Field(None, description="Any JSON object.")


class StructuredFields(BaseModel):
    """Mixed into the sampling fields of both endpoints."""

    response_format: ResponseFormat | None = Field(None, description="Constrain the output.")
    structured_outputs: StructuredOutputsParams | None = Field(
        None, description="vLLM: constrain the output (json, regex, choice, grammar)."
    )
    guided_json: dict[str, Any] | str | None = Field(None, description="vLLM: a JSON schema.")
    guided_regex: str | None = Field(None, description="vLLM: a regular expression.")
    guided_choice: list[str] | None = Field(None, description="vLLM: one of these strings.")
    guided_grammar: str | None = Field(None, description="vLLM: an EBNF grammar.")
