"""`vocdet`, the command line: the parser, one module per group of commands, and the one-line errors.

Handlers only parse, call and print; what they call lives in the library modules beside this
package (config, data, local, kubeflow, tools), which tests and benchmarks import directly.
Nothing but the console script imports this package.
"""

from vocdet.pipeline.cli.app import main  # noqa: F401  (the console script's entry point, vocdet.pipeline.cli:main)
