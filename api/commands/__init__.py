"""One module per `pickwise` sub-command group; each exposes `register(subparsers)`.

Every module adds its parser(s) and sets `func` to a callable taking the parsed
namespace and returning an exit code. Keeping them apart keeps each small and
lets the CLI grow without one file that every feature edits.
"""
