"""The nodes a Stage's tree is made of: one frozen class per combinator."""
