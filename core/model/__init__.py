"""The model layer: one client for OpenAI-compatible Chat Completions and Responses APIs."""

from core.model.client import OpenAIModelClient, build_model_client
from core.model.tools import FunctionTool, ToolRegistry

__all__ = ["FunctionTool", "OpenAIModelClient", "ToolRegistry", "build_model_client"]
