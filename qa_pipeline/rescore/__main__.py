"""``python -m qa_pipeline.rescore ...`` = ``qa-pipeline rescore ...``."""

from .cli import main

if __name__ == "__main__":
    main()
