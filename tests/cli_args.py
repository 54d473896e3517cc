"""Command lines for the tests: a shared set of options with some of them changed."""


def with_options(base, *more):
    """The command line ``base`` with the options ``more``: each replaces the same option of ``base`` (gpunn
    refuses an option given twice, where argparse kept the last), and the others are added at the end. An option
    takes the token after it as its value unless that one is an option too (``--quiet``) or it is ``--x=v``."""
    def options(tokens):
        grouped, i = [], 0
        while i < len(tokens):
            token = tokens[i]
            takes = (token.startswith("--") and "=" not in token and i + 1 < len(tokens)
                     and not tokens[i + 1].startswith("--"))
            grouped.append(tokens[i:i + 1 + takes])
            i += 1 + takes
        return grouped

    changed = {group[0].split("=", 1)[0] for group in options(list(more)) if group[0].startswith("--")}
    return [token for group in options(list(base)) if group[0].split("=", 1)[0] not in changed
            for token in group] + list(more)
