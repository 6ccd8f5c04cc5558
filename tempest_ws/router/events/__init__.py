"""Event handlers: ``@router.on(type)`` functions with validated models, Depends and replies."""
