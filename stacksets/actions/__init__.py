"""What each command does to one StackSet (or to the image step); the executor picks the action per step."""
