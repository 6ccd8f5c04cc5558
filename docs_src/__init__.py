"""Code shown in the documentation that is not a complete example of its own.

Each module holds the snippets of one page between ``--8<--`` section markers, inside
enough real code to run; ``tests/docs/test_docs_src.py`` imports and runs every module, and
``tests/docs/test_docs_blocks.py`` fails on a code block in the docs that no test runs.
"""
