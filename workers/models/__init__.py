"""Model implementations: our own PyTorch Llama family, loaded from Hugging Face directories."""
