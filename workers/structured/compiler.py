"""GrammarCompilation: StructuredOutputs compiled against one model's tokenizer, once each.

The xgrammar compiler (a TokenizerInfo over the whole vocabulary) is built on first use from
the tokenizer files in the model directory, offline. Compilation runs on a worker thread,
started when a request is added, so it overlaps the request's prefill instead of stalling a
step; the first step that samples the request waits for it if it is not done yet. Compiled
grammars are cached by their StructuredOutput (LRU): identical constraints compile once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from workers.structured.grammars import build_grammar
from workers.structured.spec import StructuredOutput

if TYPE_CHECKING:  # imported where used: the engine runs without xgrammar
    import xgrammar as xgr


class GrammarCompilation:
    def __init__(
        self,
        model_dir: str | Path,
        vocab_size: int,
        stop_token_ids: tuple[int, ...],
        max_cached: int = 256,
    ) -> None:
        """vocab_size: the model's (its logits' width), which may exceed the tokenizer's."""
        self.model_dir = str(model_dir)
        self.vocab_size = vocab_size
        self.stop_token_ids = stop_token_ids
        self.max_cached = max_cached
        self._compiler: xgr.GrammarCompiler | None = None
        self._compiled: OrderedDict[StructuredOutput, Future[xgr.CompiledGrammar]] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tandem-grammar")

    def check(self, spec: StructuredOutput) -> None:
        """Raise ValueError if the constraint cannot be compiled (cheap: no tokenizer)."""
        build_grammar(spec)

    def submit(self, spec: StructuredOutput) -> Future[xgr.CompiledGrammar]:
        """Start compiling (or find the cached compilation of) `spec`."""
        with self._lock:
            future = self._compiled.get(spec)
            if future is not None:
                self._compiled.move_to_end(spec)
                return future
            future = self._pool.submit(self._compile, spec)
            self._compiled[spec] = future
            while len(self._compiled) > self.max_cached:
                self._compiled.popitem(last=False)
            return future

    def get(self, spec: StructuredOutput) -> xgr.CompiledGrammar:
        """The compiled grammar, waiting for its compilation; raises what compiling raised
        (then it is dropped from the cache, so a later request tries again)."""
        future = self.submit(spec)
        try:
            return future.result()
        except Exception:
            with self._lock:
                if self._compiled.get(spec) is future:
                    del self._compiled[spec]
            raise

    def _compile(self, spec: StructuredOutput) -> xgr.CompiledGrammar:
        return self._compiler_for_tokenizer().compile_grammar(build_grammar(spec))

    def _compiler_for_tokenizer(self) -> xgr.GrammarCompiler:
        """Only the worker thread calls this: no lock needed around the lazy build."""
        import xgrammar as xgr

        if self._compiler is None:
            from transformers import AutoTokenizer  # heavy import, only when first needed

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"structured outputs need the model's tokenizer, which cannot be loaded "
                    f"from {self.model_dir}: {e}; add the tokenizer files to the model directory"
                ) from e
            info = xgr.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=self.vocab_size, stop_token_ids=list(self.stop_token_ids)
            )
            self._compiler = xgr.GrammarCompiler(info, max_threads=2)
        return self._compiler

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
