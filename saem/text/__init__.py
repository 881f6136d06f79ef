"""Text rules shared by ingestion, retrieval and answers: sentence splitting (:mod:`.sentences`),
the lexical analyzer (:mod:`.analyzer`: Kiwi morphemes, stemmed English words) and citation
markers (:mod:`.markers`). Pure functions; nothing here imports another saem subpackage."""
