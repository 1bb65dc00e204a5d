// Web-style fetch: `await fetch(url)` then `response.json()`. The original Ratchet's
// synchronous style works too: `fetch(url).body` is the parsed JSON.
async function main(input) {
  const response = await fetch(`https://api.github.com/users/${input.login}`, {
    headers: { Accept: 'application/vnd.github+json' },
  });
  if (response.status === 404) {
    throw new NotFoundError(`GitHub has no user named ${input.login}`);
  }
  if (response.status === 403 || response.status === 429) {
    throw new RateLimitError(`GitHub is rate limiting us (status ${response.status}); try again later`);
  }
  if (!response.ok) {
    throw new HttpError(`GitHub answered ${response.status} ${response.statusText}`);
  }
  const user = await response.json();
  console.log(`fetched ${user.login}`);
  return {
    login: user.login,
    name: user.name,
    publicRepos: user.public_repos,
    followers: user.followers,
    profile: user.html_url,
  };
}
