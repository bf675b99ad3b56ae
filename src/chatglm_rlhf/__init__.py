"""chatglm-rlhf: the ChatGLM-RLHF pipeline (Hou et al. 2024) for any Hugging Face causal LM."""

__version__ = "0.1.0"
