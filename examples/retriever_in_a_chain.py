"""saem's hybrid search as a LangChain retriever inside your own LCEL chain.

    .venv/bin/python examples/retriever_in_a_chain.py [DATA_DIR]     # a data dir made by saem ingest

The chain below formats the top passages and the question into a prompt; swap the last step
for any LangChain chat model (saem's own: ``saem.models.LlamaCppChatModel``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from saem import Saem


def passages(docs: list[Document]) -> str:
    return "\n".join(f"[{i}] {d.page_content} ({Path(d.metadata['source']).name})" for i, d in enumerate(docs, 1))


def main(data_dir: Path) -> None:
    retriever = Saem(data_dir=data_dir).as_retriever(k=3)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from these passages only; cite them as [n].\n{passages}"), ("human", "{question}")]
    )
    chain = {"passages": retriever | RunnableLambda(passages), "question": RunnablePassthrough()} | prompt
    value = chain.invoke("What does LoRA train?")
    for message in value.to_messages():
        print(f"--- {message.type}\n{message.content}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".saem-example"))
