function slugify(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

function main(input) {
  const normalised = input.text.trim().replace(/\s+/g, ' ');
  const text = input.uppercase ? normalised.toUpperCase() : normalised;
  const words = normalised === '' ? 0 : normalised.split(' ').length;
  console.log(`processed ${words} words`);
  return { text, words, characters: [...normalised].length, slug: slugify(normalised) };
}
