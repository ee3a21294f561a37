/*
 * The start-up floor of a C program: `int main(void) { return 0; }`,
 * built static as the other floors are. Each floor pays this start before
 * its work; scenario 90 takes it off the spawn floor to compare the rest
 * with an empty Rust program (rust_start.rs).
 */
int main(void)
{
	return 0;
}
