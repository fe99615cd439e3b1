"""OpenAI tool definitions and tool choice (pydantic, the user boundary)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class FunctionDefinition(BaseModel):
    name: str = Field(description="The function's name, as the model calls it.")
    description: str | None = Field(None, description="What the function does.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON schema of the arguments object.",
    )
    strict: bool | None = Field(None, description="Accepted; forced calls follow the schema.")


class Tool(BaseModel):
    type: Literal["function"] = Field(description="Only function tools exist.")
    function: FunctionDefinition = Field(description="The function.")


class NamedFunction(BaseModel):
    name: str = Field(description="The function the model must call.")


class NamedToolChoice(BaseModel):
    type: Literal["function"] = Field(description="Only function tools exist.")
    function: NamedFunction = Field(description="Which one.")


class ToolCallFunction(BaseModel):
    name: str = Field(description="The function called.")
    arguments: str = Field(description="Its arguments, a JSON object as text.")


class ToolCall(BaseModel):
    """An assistant message's earlier call, sent back in the conversation."""

    id: str = Field(description="The call's id (tool messages answer it).")
    type: Literal["function"] = Field("function", description="Only function calls exist.")
    function: ToolCallFunction = Field(description="What was called.")


class ToolFields(BaseModel):
    """Mixed into chat completion requests."""

    tools: list[Tool] | None = Field(None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="none, auto (default with tools), required, or a named function."
    )
    parallel_tool_calls: bool | None = Field(None, description="Accepted (calls may be several).")
