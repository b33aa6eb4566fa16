"""course_lib: the tested companion package of the 'Transfer learning in NLP' course.

The notebooks in ``notebooks/`` build each model step by step; this package keeps the tested version of every block.
Import submodules directly (``from course_lib.models.bert import BertModel``); importing ``course_lib`` itself is cheap.
"""

__version__ = "0.1.0"
