"""The code generator: a plan from the IR, rendered to C, built with clang into the artifact."""
