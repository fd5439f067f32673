// placeholder: owner replaces
