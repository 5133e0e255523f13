#!/usr/bin/env python3
"""Lists the counter names a header counts: the string literals passed to
env.count(...) and to the helpers that forward a name to it (drop, reject_input).
Prints them per file; computed names (no literal in the call) are listed as
'?' with their line so that a person declares every name they can take.

  scripts/counter_names.py include/dcp/gossip/plumtree.hpp ...
"""
import re
import sys

CALL = re.compile(r"(?<![\w:])(?:\w+\.count|drop|reject_input|admit|count)\s*\(")
LIT = re.compile(r'"((?:[^"\\]|\\.)*)"')


def calls(text):
    for m in CALL.finditer(text):
        start = m.start()
        name = m.group(0)
        # skip std::count, x.count() and foo_count(
        before = text[max(0, start - 6):start]
        if before.endswith('std::') or re.search(r'\w$', before):
            continue
        i = m.end()
        depth = 1
        while i < len(text) and depth:
            c = text[i]
            if c == '"':
                j = i + 1
                while text[j] != '"':
                    j += 2 if text[j] == '\\' else 1
                i = j
            elif c == '(':
                depth += 1
            elif c == ')':
                depth -= 1
            i += 1
        args = text[m.end():i - 1]
        if name.startswith('.count') and not re.search(r'env\w*\s*$|env\w*\.?$', text[max(0, start - 12):start]) and not args.strip().startswith('"'):
            continue
        line = text.count('\n', 0, start) + 1
        yield name, args, line


def main():
    for path in sys.argv[1:]:
        text = open(path).read()
        # drop comments so commented code is not counted
        text = re.sub(r'//[^\n]*', lambda m: ' ' * len(m.group(0)) if '"' not in m.group(0) else re.sub(r'[^\n]', ' ', m.group(0)), text)
        names, computed = [], []
        for name, args, line in calls(text):
            if not args.strip():
                continue
            lits = LIT.findall(args)
            lits = [l for l in lits if re.fullmatch(r'[a-z][a-z0-9_]*', l)]
            if not lits:
                computed.append((line, name + args + ')'))
            for l in lits:
                if l not in names:
                    names.append(l)
        print(f'== {path} ({len(names)})')
        for n in names:
            print('  ' + n)
        for line, c in computed:
            print(f'  ? {line}: {c.strip()[:100]}')


if __name__ == '__main__':
    main()
